package broker

// What handlers ask of the cluster: its brokers, where replicas go, which
// replicas are in sync, the controller and the cluster ID.

import (
	"crypto/rand"
	"net"
	"slices"
	"strconv"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// assignReplicas spreads partitions' replica sets evenly over the brokers,
// starting at a random broker, as Kafka does.
func (b *Broker) assignReplicas(from, count int32, replicas int16) [][]int32 {
	brokers := make([]int32, 0, len(b.cfg.Peers))
	for id := range b.cfg.Peers {
		brokers = append(brokers, id)
	}
	slices.Sort(brokers)
	var r [1]byte
	_, _ = rand.Read(r[:])
	start := int(r[0]) % len(brokers)
	out := make([][]int32, count)
	for p := range out {
		set := make([]int32, replicas)
		for j := range set {
			set[j] = brokers[(start+int(from)+p+j)%len(brokers)]
		}
		out[p] = set
	}
	return out
}

// knownBroker reports whether id is a broker of the cluster.
func (b *Broker) knownBroker(id int32) bool {
	_, ok := b.cfg.Peers[id]
	return ok
}

// brokerCount is how many brokers can hold replicas.
func (b *Broker) brokerCount() int { return len(b.cfg.Peers) }

// defaultReplication is the replication factor of topics created without
// one: min(3, brokers).
func (b *Broker) defaultReplication() int16 { return int16(min(3, len(b.cfg.Peers))) }

// metadataBrokers lists the brokers for Metadata and DescribeCluster,
// without the fenced ones, except those in leaders: a partition's leader
// stays named until its Raft group elects another, and clients such as
// sarama fail a write outright when the leader they are given is not in
// the broker list, while they retry one they cannot reach.
func (b *Broker) metadataBrokers(leaders map[int32]bool) []kmsg.MetadataResponseBroker {
	var out []kmsg.MetadataResponseBroker
	fenced := b.ctrl.State().Fenced
	for _, p := range b.peers() {
		if p.ID == b.cfg.NodeID {
			out = append(out, b.brokerEntry()) // as this broker advertises itself
			continue
		}
		if fenced[p.ID] && !leaders[p.ID] {
			continue // unreachable: clients would only time out on it
		}
		host, port, err := net.SplitHostPort(p.Addr)
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(port)
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = p.ID, host, int32(n)
		out = append(out, mb)
	}
	return out
}

// replicaStatus splits a replica set as KRaft's metadata does: replicas on
// fenced brokers are offline and out of the ISR (the leader stays in it
// until its successor reports); replicas the leader reports catching up
// after losing their state are out of the ISR.
func (b *Broker) replicaStatus(replicas []int32, l cluster.Leader) (isr, offline []int32) {
	fenced := b.ctrl.State().Fenced
	isr, offline = make([]int32, 0, len(replicas)), []int32{}
	for _, id := range replicas {
		switch {
		case id == l.Leader:
			isr = append(isr, id)
		case fenced[id]:
			offline = append(offline, id)
		case !slices.Contains(l.CatchingUp, id):
			isr = append(isr, id)
		}
	}
	return isr, offline
}

// inSyncReplicas counts the ISR of a partition (as replicaStatus lists it)
// and reports whether this broker leads it; a single broker is the whole
// ISR of its partitions.
func (b *Broker) inSyncReplicas(t *topic, p int32) (int, bool) {
	if !t.parts[p].IsLeader() {
		return 0, false
	}
	isr, _ := b.replicaStatus(t.assign[p], cluster.Leader{Leader: b.cfg.NodeID, CatchingUp: t.leaders[p].CatchingUp})
	return len(isr), true
}

// controllerID is the broker clients are told is the controller.
func (b *Broker) controllerID() int32 { return b.ctrl.LeaderID() }

// currentClusterID is the cluster's ID.
func (b *Broker) currentClusterID() string { return b.ctrl.State().ClusterID }
