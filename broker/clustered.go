package broker

// The cluster: topics live in the replicated cluster metadata (one Raft
// group over the brokers, listed in Config.Peers). A single broker is a
// cluster of one: its metadata group has one voter, and its partitions are
// local logs (partition.Local) rather than Raft groups; every other broker
// holds each of its partitions as a Raft group over the replicas.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/coordinator"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataWait bounds how long a handler waits for a committed metadata
// change to reach this broker's catalog.
const metadataWait = 15 * time.Second

// tuneMetadataRaft sets the election settings of the metadata group. A
// follower that hears nothing from its leader for MetadataHeartbeat to
// twice that (1.5 to 3 s by default) starts an election of its own; the
// failure detector starts one sooner (metadata_failover.go). Heartbeats go
// out every tenth to fifth of it per follower and travel in the mux's
// shared frames (up to 200 ms later, inside the leader lease). Partition
// groups, of which there are many, run with long timeouts instead (see
// tunePartitionRaft).
func (t Timings) tuneMetadataRaft(c *raft.Config) {
	c.HeartbeatTimeout = t.MetadataHeartbeat
	c.ElectionTimeout = t.MetadataHeartbeat
	c.LeaderLeaseTimeout = t.MetadataLease
	c.CommitTimeout = 5 * time.Second
}

// tuneSoleVoter sets the election settings of a metadata group whose only
// voter is this broker: nobody else can lead it, so it elects itself as
// soon as Raft allows.
func tuneSoleVoter(c *raft.Config) {
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Second
}

// single reports whether this broker is a cluster of one. Its partitions
// are then local logs, and no other broker sends it Raft traffic.
func (b *Broker) single() bool { return len(b.cfg.Peers) == 1 }

// startCluster joins the metadata group; partitions follow from what it
// holds once the broker starts.
func (b *Broker) startCluster() error {
	self := b.cfg.Peers[b.cfg.NodeID]
	b.mux = raftmux.New(raft.ServerAddress(self), b.log)
	tune := b.cfg.Timings.tuneMetadataRaft
	if b.single() {
		tune = tuneSoleVoter
	}
	ctrl, err := cluster.Start(cluster.Config{
		NodeID: b.cfg.NodeID, Peers: b.peers(), DataDir: b.cfg.DataDir,
		Store: b.store, Mux: b.mux, Logger: b.log, Tune: tune,
	})
	if err != nil {
		b.mux.Close()
		return err
	}
	b.ctrl = ctrl
	b.reconcileWake = make(chan struct{}, 1)
	b.electWake = make(chan struct{}, 1)
	b.ready = make(chan struct{})
	var peers []raft.ServerAddress
	for _, addr := range b.cfg.Peers {
		peers = append(peers, raft.ServerAddress(addr))
	}
	b.metaElectWake = make(chan struct{}, 1)
	live := raftmux.LivenessConfig{Interval: b.cfg.Timings.PeerPingAfter, DeadAfter: b.cfg.Timings.PeerDeadAfter}
	b.mux.WatchPeers(peers, live, func() {
		b.wakeElect()
		signal(b.metaElectWake)
	})
	b.registered = make(chan struct{})
	b.caughtUp = make(chan struct{})
	ctrl.Watch(func(*cluster.State) { b.wakeReconcile() })
	return nil
}

func (b *Broker) peers() []cluster.Peer {
	out := make([]cluster.Peer, 0, len(b.cfg.Peers))
	for id, addr := range b.cfg.Peers {
		out = append(out, cluster.Peer{ID: id, Addr: addr})
	}
	slices.SortFunc(out, func(a, c cluster.Peer) int { return int(a.ID - c.ID) })
	return out
}

// offsetsLeaderWait bounds how long a starting broker that has just
// created __consumer_offsets waits for its leaders before serving clients.
const offsetsLeaderWait = 5 * time.Second

// initCluster records the cluster ID and brokers (the first proposal wins),
// then this broker's start, and opens the gate to clients once the local
// topics reflect the metadata and __consumer_offsets exists.
func (b *Broker) initCluster() {
	var u [16]byte
	_, _ = rand.Read(u[:])
	clusterID := base64.RawURLEncoding.EncodeToString(u[:])
	if b.legacy != nil && b.legacy.clusterID != "" {
		clusterID = b.legacy.clusterID
	}
	if b.ctrl.State().ClusterID == "" && !b.proposeUntilApplied(cluster.InitCommand(clusterID, b.cfg.Peers)) {
		return
	}
	if b.legacy != nil && !b.migrateLegacy() {
		return
	}
	if !b.proposeUntilApplied(cluster.BrokerStartedCommand(b.cfg.NodeID)) {
		return
	}
	close(b.registered)
	b.wakeReconcile()
	select {
	case <-b.caughtUp:
	case <-b.ctx.Done():
		return
	}
	b.log.Info().Str("cluster_id", b.ctrl.State().ClusterID).Msg("cluster metadata ready")
	if created := b.ensureOffsetsTopic(); created {
		if t := b.topics.get(coordinator.OffsetsTopic); t != nil {
			b.awaitLeaders(t.id, time.Now().Add(offsetsLeaderWait))
		}
	}
	close(b.ready)
}

// ensureOffsetsTopic creates __consumer_offsets through the metadata group
// if no broker has yet; every broker tries, the first one wins. It reports
// whether this broker created it.
func (b *Broker) ensureOffsetsTopic() (created bool) {
	for b.ctx.Err() == nil {
		if mt := b.ctrl.State().Topics[coordinator.OffsetsTopic]; mt != nil {
			if n := int32(len(mt.Replicas)); n != b.groups.Partitions() {
				b.log.Error().Int32("topic_partitions", n).Int32("configured", b.groups.Partitions()).
					Msg("__consumer_offsets has another partition count than --offsets-topic-partitions; groups map to partitions by the configured count")
			}
			return created
		}
		_, err := b.createTopic(coordinator.OffsetsTopic, b.groups.Partitions(), -1, map[string]string{"cleanup.policy": "compact"}, false)
		if err == nil {
			created = true
			continue
		}
		if errors.Is(err, ErrTopicExists) {
			continue
		}
		b.log.Warn().Err(err).Msg("creating __consumer_offsets")
		select {
		case <-b.ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return created
}

func (b *Broker) wakeReconcile() { signal(b.reconcileWake) }

// reconcileLoop keeps the local topics and partition replicas in line with
// the metadata. The first reconciliation that starts after this broker's
// start is recorded closes caughtUp.
func (b *Broker) reconcileLoop() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.reconcileWake:
			registered := isClosed(b.registered)
			b.reconcile(b.ctrl.State())
			if registered && !isClosed(b.caughtUp) {
				close(b.caughtUp)
			}
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (b *Broker) reconcile(st *cluster.State) {
	current := make(map[[16]byte]*topic)
	for _, t := range b.topics.list() {
		current[t.id] = t
	}
	var unreported []*cluster.Command // local partitions the metadata does not show led here
	for _, mt := range st.Topics {
		old := current[mt.ID]
		delete(current, mt.ID)
		parts := make([]partition.Partition, len(mt.Replicas))
		for i, replicas := range mt.Replicas {
			if old != nil && i < len(old.parts) {
				if _, remote := old.parts[i].(partition.Remote); !remote || !slices.Contains(replicas, b.cfg.NodeID) {
					parts[i] = old.parts[i]
				}
			}
			if parts[i] == nil {
				parts[i] = partition.Remote{}
				if slices.Contains(replicas, b.cfg.NodeID) {
					p, err := b.openPartition(mt, int32(i))
					if err != nil {
						b.log.Error().Err(err).Str("topic", mt.Name).Int("partition", i).Msg("opening replica")
						continue
					}
					parts[i] = p
				}
			}
			if lp, ok := parts[i].(*partition.Local); ok && i < len(mt.Leaders) && mt.Leaders[i].Leader != b.cfg.NodeID {
				unreported = append(unreported, cluster.SetLeaderCommand(mt.ID, int32(i), b.cfg.NodeID, lp.Offsets().LeaderEpoch))
			}
		}
		b.topics.put(&topic{
			name: mt.Name, id: mt.ID, parts: parts, configs: mt.Configs,
			internal: len(mt.Name) > 2 && mt.Name[:2] == "__",
			replicas: int16(len(mt.Replicas[0])), effective: b.effective(mt.Configs),
			assign: mt.Replicas, leaders: mt.Leaders,
		})
	}
	for _, gone := range current {
		b.topics.remove(gone)
		if b.groups != nil {
			b.groups.TopicDeleted(gone.name)
		}
		for i, p := range gone.parts {
			if err := p.Delete(); err != nil {
				b.log.Error().Err(err).Str("topic", gone.name).Int("partition", i).Msg("deleting replica")
			}
		}
		b.log.Info().Str("topic", gone.name).Msg("topic deleted")
	}
	b.wakeElect() // new replicas may stand for election at once
	b.reportLocalLeaders(unreported)
}

// reportLocalLeaders records in the metadata that this broker leads its
// local partitions, which have no election to report one. It waits for
// the reports, so that the reconciliation that opens the gate to clients
// has them recorded; their own reconciliation follows.
func (b *Broker) reportLocalLeaders(cmds []*cluster.Command) {
	if len(cmds) == 0 || !isClosed(b.registered) {
		return // before registration, which clears them
	}
	var wg sync.WaitGroup
	for _, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.proposeUntilApplied(cmd)
		}()
	}
	wg.Wait()
}

// openPartition opens this broker's replica of one partition: a local log
// on a single broker, a Raft group otherwise.
func (b *Broker) openPartition(mt *cluster.Topic, n int32) (partition.Partition, error) {
	if !b.single() {
		return b.openReplica(mt, n)
	}
	p, err := partition.OpenLocal(partition.LocalOptions{
		Store: b.store, Log: storage.LogID{Topic: mt.ID, Partition: n}, Decompressor: b.decompressor,
	})
	if err != nil {
		return nil, err
	}
	if mt.Name == coordinator.OffsetsTopic && b.groups != nil {
		b.groups.Elect(n, p)
	}
	return p, nil
}

// openReplica starts this broker's replica of one partition.
func (b *Broker) openReplica(mt *cluster.Topic, n int32) (*partition.Replicated, error) {
	group := fmt.Sprintf("p/%x/%d", mt.ID, n)
	layer, err := b.mux.Layer(group)
	if err != nil {
		return nil, err
	}
	trans := layer.NewTransport(2, 10*time.Second)
	trans.HoldForPeers()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(b.cfg.DataDir, "raft", fmt.Sprintf("%x", mt.ID), strconv.Itoa(int(n))), 1, hclog.NewNullLogger())
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	var servers []raft.Server
	for _, id := range mt.Replicas[n] {
		servers = append(servers, raft.Server{ID: raft.ServerID(strconv.Itoa(int(id))), Address: raft.ServerAddress(b.cfg.Peers[id])})
	}
	topicID := mt.ID
	// The coordinator serves the groups of an offsets partition this broker
	// leads. Leadership is only reported once the new leader has applied
	// every committed entry, so replaying the partition sees them all.
	offsets := mt.Name == coordinator.OffsetsTopic && b.groups != nil
	ref := make(chan *partition.Replicated, 1)
	p, err := partition.OpenReplicated(partition.ReplicatedOptions{
		ID: raft.ServerID(strconv.Itoa(int(b.cfg.NodeID))), Group: group, Store: b.store,
		Transport: trans, Snapshots: snaps, Servers: servers, Tune: b.cfg.Timings.tunePartitionRaft, Logger: b.log,
		Decompressor: b.decompressor,
		OnOutranked:  b.wakeElect,
		OnLeadership: func(leader bool, epoch int32) {
			if leader {
				b.goFunc(func() { b.reportLeader(topicID, n, epoch) })
			}
			if !offsets {
				return
			}
			if !leader {
				b.groups.Resign(n)
				return
			}
			b.goFunc(func() {
				select {
				case p := <-ref:
					ref <- p
					if p.IsLeader() {
						b.groups.Elect(n, p)
					}
				case <-b.ctx.Done():
				}
			})
		},
	})
	if err != nil {
		trans.Close()
		return nil, err
	}
	ref <- p
	return p, nil
}

// reportLeader records in the metadata that this broker leads a partition.
func (b *Broker) reportLeader(topicID [16]byte, n, epoch int32) {
	// Only after this broker's start is recorded, which clears what it led
	// before; a report committed earlier would be cleared with them.
	select {
	case <-b.registered:
	case <-b.ctx.Done():
		return
	}
	b.proposeUntilApplied(cluster.SetLeaderCommand(topicID, n, b.cfg.NodeID, epoch))
}

// proposeUntilApplied proposes cmd again until the metadata group has
// applied it; it gives up, returning false, when the broker closes.
func (b *Broker) proposeUntilApplied(cmd *cluster.Command) bool {
	for b.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		_, err := b.ctrl.Propose(ctx, cmd)
		cancel()
		if err == nil {
			return true
		}
		b.log.Debug().Err(err).Str("command", cmd.Kind).Msg("metadata proposal pending")
	}
	return false
}

// propose applies a metadata command and turns its error into the broker's.
func (b *Broker) propose(cmd *cluster.Command) (cluster.Result, error) {
	ctx, cancel := context.WithTimeout(b.ctx, metadataWait)
	defer cancel()
	res, err := b.ctrl.Propose(ctx, cmd)
	if err != nil {
		return res, fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
	}
	switch err := res.Error(); {
	case err == nil:
		return res, nil
	case errors.Is(err, cluster.ErrTopicExists):
		return res, fmt.Errorf("%w: %w", ErrTopicExists, err)
	case errors.Is(err, cluster.ErrTopicCollision):
		return res, fmt.Errorf("%w: %w", ErrInvalidTopic, err)
	case errors.Is(err, cluster.ErrUnknownTopic):
		return res, fmt.Errorf("%w: %w", ErrUnknownTopic, err)
	default:
		return res, err
	}
}

// awaitCatalog waits until the local catalog reflects a committed change.
func (b *Broker) awaitCatalog(done func() bool) error {
	return b.awaitCatalogUntil(time.Now().Add(metadataWait), done)
}

// awaitLeaders waits, until deadline at the latest, for every partition of
// topic id to have a leader in this broker's catalog. Kafka answers
// CreateTopics and CreatePartitions with leaders in place, so that a
// client producing right after finds them; here the replicas elect them
// once their groups start, a few tens of milliseconds later. It does not
// fail: the topic exists either way, and the leaders follow.
func (b *Broker) awaitLeaders(id [16]byte, deadline time.Time) {
	_ = b.awaitCatalogUntil(deadline, func() bool {
		t := b.topics.getID(id)
		if t == nil {
			return true // deleted meanwhile
		}
		for _, l := range t.leaders {
			if l.Leader < 0 {
				return false
			}
		}
		return true
	})
}

// awaitCatalogUntil waits until done reports true or deadline passes.
func (b *Broker) awaitCatalogUntil(deadline time.Time, done func() bool) error {
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: metadata change not applied on this broker yet", kerr.RequestTimedOut)
		}
		select {
		case <-b.ctx.Done():
			return ErrClosed
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

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
// until its successor reports).
func (b *Broker) replicaStatus(replicas []int32, leader int32) (isr, offline []int32) {
	fenced := b.ctrl.State().Fenced
	isr, offline = make([]int32, 0, len(replicas)), []int32{}
	for _, id := range replicas {
		switch {
		case id == leader || !fenced[id]:
			isr = append(isr, id)
		default:
			offline = append(offline, id)
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
	isr, _ := b.replicaStatus(t.assign[p], b.cfg.NodeID)
	return len(isr), true
}

// controllerID is the broker clients are told is the controller.
func (b *Broker) controllerID() int32 { return b.ctrl.LeaderID() }

// currentClusterID is the cluster's ID.
func (b *Broker) currentClusterID() string { return b.ctrl.State().ClusterID }

// handOffLeadership moves every Raft leadership this broker holds to
// another replica before it shuts down. Each transfer is bounded by Raft's
// election timeout.
func (b *Broker) handOffLeadership() {
	var wg sync.WaitGroup
	for _, t := range b.topics.list() {
		for _, p := range t.parts {
			if rp, ok := p.(partition.Replica); ok && rp.IsLeader() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rp.HandOff()
				}()
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.ctrl.HandOff()
	}()
	wg.Wait()
}
