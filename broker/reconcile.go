package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/storage"
)

// Reconciliation: every broker builds its catalog of topics and opens or
// deletes its partition replicas from the metadata it has applied.

func (b *Broker) wakeReconcile() { signal(b.reconcileWake) }

// reconcileLoop keeps the local topics and partition replicas in line with
// the metadata. The first reconciliation that starts after this broker's
// start is recorded, and has no leaders of local partitions left to report,
// closes caughtUp.
func (b *Broker) reconcileLoop() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.reconcileWake:
			registered := isClosed(b.registered)
			st := b.ctrl.State()
			reported := b.reconcile(st)
			// A pass that recorded leaders built its catalog without
			// them; the next one, woken by their change, has them.
			if registered && (!reported || b.ctrl.State() == st) && !isClosed(b.caughtUp) {
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

// reconcile brings the catalog and replicas in line with st. It reports
// whether it recorded leaders of local partitions, which st lacks.
func (b *Broker) reconcile(st *cluster.State) (reported bool) {
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
				if _, remote := old.parts[i].(partition.Remote); !remote && b.rebuilds.takeForce(replicaKey{mt.ID, int32(i)}) {
					if err := b.forceVoters(mt, int32(i), old.parts[i]); err != nil {
						b.log.Error().Err(err).Str("topic", mt.Name).Int("partition", i).Msg("forcing the replicas' votes")
					}
					parts[i] = nil
				}
				if _, remote := old.parts[i].(partition.Remote); !remote && b.rebuilds.take(replicaKey{mt.ID, int32(i)}) {
					if err := b.rebuild(mt.Name, mt.ID, int32(i), old.parts[i]); err != nil {
						b.log.Error().Err(err).Str("topic", mt.Name).Int("partition", i).Msg("rebuilding replica")
					}
					parts[i] = nil
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
	return b.reportLocalLeaders(unreported)
}

// reportLocalLeaders records in the metadata that this broker leads its
// local partitions, which have no election to report one; the change wakes
// the reconciliation that puts them in the catalog. It reports whether it
// proposed any.
func (b *Broker) reportLocalLeaders(cmds []*cluster.Command) bool {
	if len(cmds) == 0 || !isClosed(b.registered) {
		return false // before registration, which clears them
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
	return true
}

// openPartition opens this broker's replica of one partition: a local log
// on a single broker, a Raft group otherwise.
func (b *Broker) openPartition(mt *cluster.Topic, n int32) (partition.Partition, error) {
	if !b.single() {
		p, err := b.openReplica(mt, n)
		if errors.Is(err, partition.ErrDamaged) && len(mt.Replicas[n]) > 1 {
			b.log.Error().Err(err).Str("topic", mt.Name).Int32("partition", n).
				Msg("replica's stored log is damaged: it is rebuilt from its peers")
			if err := b.dropReplica(mt.ID, n); err != nil {
				return nil, err
			}
			b.rebuilds.markFresh(replicaKey{mt.ID, n})
			return b.openReplica(mt, n)
		}
		if errors.Is(err, partition.ErrDamaged) {
			b.log.Error().Err(err).Str("topic", mt.Name).Int32("partition", n).
				Msg("the only copy of the partition is damaged: it is not started (restore the data directory, or delete the topic)")
		}
		return p, err
	}
	p, err := partition.OpenLocal(partition.LocalOptions{
		Store: b.store, Log: storage.LogID{Topic: mt.ID, Partition: n}, Decompressor: b.decompressor,
		OnDamaged: func(err error) {
			b.log.Error().Err(err).Str("topic", mt.Name).Int32("partition", n).
				Msg("the only copy of the partition is damaged: reads of the damaged batches fail with KAFKA_STORAGE_ERROR")
		},
	})
	if err != nil {
		return nil, err
	}
	if err := p.Damaged(); err != nil {
		b.log.Error().Err(err).Str("topic", mt.Name).Int32("partition", n).
			Msg("the only copy of the partition is damaged: it is not started, and its reads and writes answer KAFKA_STORAGE_ERROR (restore the data directory, or delete the topic)")
	}
	if c := b.coordinatorOf(mt.Name); c != nil {
		c.Elect(n, p)
	}
	return p, nil
}

// openReplica starts this broker's replica of one partition.
func (b *Broker) openReplica(mt *cluster.Topic, n int32) (*partition.Replicated, error) {
	group := replicaGroup(mt.ID, n)
	layer, err := b.mux.Layer(group)
	if err != nil {
		return nil, err
	}
	trans := layer.NewTransport(2, 10*time.Second)
	trans.HoldForPeers()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(b.snapshotDir(mt.ID, n), 1, hclog.NewNullLogger())
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	servers := b.replicaServers(mt, n)
	topicID := mt.ID
	// A coordinator serves what an internal topic's partition holds (groups,
	// transactions) where this broker leads it. Leadership is only reported
	// once the new leader has applied every committed entry, so replaying
	// the partition sees them all.
	coord := b.coordinatorOf(mt.Name)
	ref := make(chan *partition.Replicated, 1)
	p, err := partition.OpenReplicated(partition.ReplicatedOptions{
		ID: raft.ServerID(strconv.Itoa(int(b.cfg.NodeID))), Group: group, Store: b.store,
		Transport: trans, Snapshots: snaps, Servers: servers, Tune: b.cfg.Timings.tunePartitionRaft, Logger: b.log,
		// unclean.leader.election.enable chooses availability: a replica
		// that lost its data may be elected at once.
		CatchUpFirst: b.rebuilds.reopened(replicaKey{mt.ID, n}) ||
			(b.lost.mustCatchUp(b.ctrl.State(), mt, n) && !strings.EqualFold(mt.Configs["unclean.leader.election.enable"], "true")),
		OnDamaged: func(err error) {
			b.goFunc(func() {
				select {
				case p := <-ref:
					ref <- p
					b.replicaDamaged(mt.Name, topicID, n, mt.Replicas[n], p, err)
				case <-b.ctx.Done():
				}
			})
		},
		Decompressor: b.decompressor,
		OnOutranked:  b.wakeElect,
		OnNonvoters:  func(ids []int32) { b.reportCatchingUp(topicID, n, ids) },
		OnLeadership: func(leader bool, epoch int32) {
			if leader {
				b.goFunc(func() { b.reportLeader(topicID, n, epoch) })
			}
			if coord == nil {
				return
			}
			if !leader {
				coord.Resign(n)
				return
			}
			b.goFunc(func() {
				select {
				case p := <-ref:
					ref <- p
					if p.IsLeader() {
						coord.Elect(n, p)
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

// catchingUpWait bounds a report of the replicas catching up.
const catchingUpWait = 2 * time.Second

// reportCatchingUp records in the metadata, as the partition's reported
// leader, the replicas that are out of its ISR while they catch up (the
// non-voters of its Raft group), when they differ from those recorded.
func (b *Broker) reportCatchingUp(topicID [16]byte, n int32, ids []int32) {
	t := b.ctrl.State().TopicByID(topicID)
	if t == nil || int(n) >= len(t.Leaders) {
		return
	}
	cur := t.Leaders[n]
	slices.Sort(ids)
	if cur.Leader != b.cfg.NodeID || slices.Equal(cur.CatchingUp, ids) {
		return // not reported as the leader yet, or nothing new
	}
	ctx, cancel := context.WithTimeout(b.ctx, catchingUpWait)
	defer cancel()
	res, err := b.ctrl.Propose(ctx, cluster.SetCatchingUpCommand(topicID, n, b.cfg.NodeID, cur.Epoch, ids))
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		b.log.Debug().Err(err).Str("topic", t.Name).Int32("partition", n).Msg("replicas catching up not recorded")
		return
	}
	b.log.Info().Str("topic", t.Name).Int32("partition", n).Ints32("catching_up", ids).Msg("in-sync replicas changed: replicas that lost their state are out of the ISR until they have caught up")
}

// replicaServers is the Raft configuration of partition n of a topic: its
// replicas, every one a voter.
func (b *Broker) replicaServers(mt *cluster.Topic, n int32) []raft.Server {
	servers := make([]raft.Server, 0, len(mt.Replicas[n]))
	for _, id := range mt.Replicas[n] {
		servers = append(servers, raft.Server{ID: raft.ServerID(strconv.Itoa(int(id))), Address: raft.ServerAddress(b.cfg.Peers[id])})
	}
	return servers
}
