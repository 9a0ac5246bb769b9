package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/coordinator"
)

// The cluster: topics live in the replicated cluster metadata (one Raft
// group over the brokers, listed in Config.Peers). A single broker is a
// cluster of one: its metadata group has one voter, and its partitions are
// local logs (partition.Local) rather than Raft groups; every other broker
// holds each of its partitions as a Raft group over the replicas
// (reconcile.go). This file starts a broker's part in it.

// tuneMetadataRaft sets the election settings of the metadata group. A
// follower that hears nothing from its leader for MetadataHeartbeat to
// twice that (1.5 to 3 s by default) starts an election of its own; the
// failure detector starts one sooner (failover_metadata.go). Heartbeats go
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
	ctrl.Watch(func(st *cluster.State) {
		if b.lost.note(st) {
			b.log.Warn().Str("incarnation", b.lost.incarnation).Str("known_incarnation", st.Incarnations[b.cfg.NodeID]).
				Msg("this broker's data directory is not the one the cluster knew: its replicas start empty and take no part in elections until they have caught up with their leaders")
		}
		b.wakeReconcile()
	})
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
	if !b.proposeUntilApplied(cluster.BrokerStartedCommand(b.cfg.NodeID, b.lost.incarnation)) {
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
