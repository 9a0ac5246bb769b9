package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/broker/raftlog"
)

// replicaKey names one partition replica of this broker.
type replicaKey struct {
	topic [16]byte
	n     int32
}

// rebuilds are the replicas found damaged: reconcile deletes each and
// opens it again empty, fenced until it has caught up from its leader
// (as a replica of a lost data directory is).
type rebuilds struct {
	mu      sync.Mutex
	pending map[replicaKey]bool // to delete and reopen
	fresh   map[replicaKey]bool // reopened: must catch up first
	force   map[replicaKey]bool // to close, force every replica a voter, and reopen
}

// addForce has reconcile reopen k with every replica a voter (see
// raftlog.Store.ForceVoters).
func (r *rebuilds) addForce(k replicaKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.force == nil {
		r.force = make(map[replicaKey]bool)
	}
	r.force[k] = true
}

// takeForce reports whether k is to be forced now.
func (r *rebuilds) takeForce(k replicaKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.force[k] {
		return false
	}
	delete(r.force, k)
	return true
}

func (r *rebuilds) add(k replicaKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending, r.fresh = make(map[replicaKey]bool), make(map[replicaKey]bool)
	}
	r.pending[k] = true
}

// take reports whether k is to be rebuilt now, and marks it reopened.
func (r *rebuilds) take(k replicaKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pending[k] {
		return false
	}
	delete(r.pending, k)
	r.fresh[k] = true
	return true
}

// markFresh makes the next open of k catch up first.
func (r *rebuilds) markFresh(k replicaKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fresh == nil {
		r.pending, r.fresh = make(map[replicaKey]bool), make(map[replicaKey]bool)
	}
	r.fresh[k] = true
}

// reopened reports whether k was just rebuilt, once.
func (r *rebuilds) reopened(k replicaKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fresh[k] {
		return false
	}
	delete(r.fresh, k)
	return true
}

// replicaDamaged is told that a read found this broker's replica of
// partition n of a topic damaged: it hands off the leadership, if it
// leads, and has the replica rebuilt from its peers. A replica without
// peers is the only copy: it is left as it is, refusing the damaged reads.
func (b *Broker) replicaDamaged(name string, id [16]byte, n int32, replicas []int32, p partition.Replica, err error) {
	up, _ := b.peerStates()
	others := 0
	for _, r := range replicas {
		if r != b.cfg.NodeID && up[r] {
			others++
		}
	}
	if len(replicas) < 2 {
		b.log.Error().Err(err).Str("topic", name).Int32("partition", n).
			Msg("the only copy of the partition is damaged: reads of the damaged batches fail with KAFKA_STORAGE_ERROR")
		return
	}
	if others <= len(replicas)/2 {
		// Deleting this copy would leave the group without a majority
		// that holds the log.
		b.log.Error().Err(err).Str("topic", name).Int32("partition", n).
			Msg("replica's stored log is damaged, and too few other replicas are live to rebuild it from: reads of the damaged batches fail with KAFKA_STORAGE_ERROR")
		return
	}
	b.log.Error().Err(err).Str("topic", name).Int32("partition", n).
		Msg("replica's stored log is damaged: it hands off its leadership and is rebuilt from its peers")
	p.HandOff(b.ctx)
	b.rebuilds.add(replicaKey{id, n})
	b.wakeReconcile()
}

// rebuild deletes a damaged replica's log and snapshots, so that it opens
// again empty.
func (b *Broker) rebuild(name string, id [16]byte, n int32, p partition.Partition) error {
	if err := p.Delete(); err != nil {
		return fmt.Errorf("deleting damaged replica: %w", err)
	}
	if err := os.RemoveAll(b.snapshotDir(id, n)); err != nil {
		return fmt.Errorf("deleting damaged replica's snapshots: %w", err)
	}
	b.log.Warn().Str("topic", name).Int32("partition", n).Msg("damaged replica deleted: it catches up from its leader")
	return nil
}

// forceVoters closes this broker's replica of partition n and makes every
// replica a voter of its group, for an unclean election (see
// raftlog.Store.ForceVoters); reconcile opens it again.
func (b *Broker) forceVoters(mt *cluster.Topic, n int32, p partition.Partition) error {
	if err := p.Close(); err != nil {
		return fmt.Errorf("closing replica: %w", err)
	}
	logs, err := raftlog.Open(b.store, replicaGroup(mt.ID, n))
	if err != nil {
		return fmt.Errorf("forcing voters: %w", err)
	}
	if err := logs.ForceVoters(b.replicaServers(mt, n)); err != nil {
		return err
	}
	b.log.Warn().Str("topic", mt.Name).Int32("partition", n).
		Msg("unclean leader election: every replica of the partition votes again, those that lost their data included; this replica's log outranks theirs")
	return nil
}

// dropReplica deletes what the store and the snapshot directory hold of a
// replica that does not open.
func (b *Broker) dropReplica(id [16]byte, n int32) error {
	logs, err := raftlog.Open(b.store, replicaGroup(id, n))
	if err != nil {
		return fmt.Errorf("deleting damaged replica: %w", err)
	}
	if err := logs.Drop(); err != nil {
		return fmt.Errorf("deleting damaged replica: %w", err)
	}
	if err := os.RemoveAll(b.snapshotDir(id, n)); err != nil {
		return fmt.Errorf("deleting damaged replica's snapshots: %w", err)
	}
	return nil
}

// replicaGroup names the Raft group of partition n of topic id.
func replicaGroup(id [16]byte, n int32) string { return fmt.Sprintf("p/%x/%d", id, n) }

// snapshotDir is where partition n of topic id keeps its Raft snapshots.
func (b *Broker) snapshotDir(id [16]byte, n int32) string {
	return filepath.Join(b.cfg.DataDir, "raft", fmt.Sprintf("%x", id), strconv.Itoa(int(n)))
}
