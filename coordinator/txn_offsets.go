package coordinator

import (
	"time"
)

// Offsets committed in a transaction (TxnOffsetCommit): written to the
// group's offsets partition as a transactional batch of the producer, they
// take effect when the transaction's commit marker reaches that partition
// (TxnEnded) and are dropped at its abort marker. Until then an OffsetFetch
// that requires stable offsets gets UNSTABLE_OFFSET_COMMIT for them.

// TxnCommitRequest is a TxnOffsetCommit.
type TxnCommitRequest struct {
	Group      string
	ProducerID int64
	Epoch      int16
	// Generation, MemberID and InstanceID identify the consumer (KIP-447):
	// a member of an older generation cannot commit.
	Generation int32
	MemberID   string
	InstanceID *string
	Offsets    []CommitOffset
}

// TxnCommitOffsets writes offsets of a transaction; done gets one error per
// offset, in order.
func (c *Coordinator) TxnCommitOffsets(req TxnCommitRequest, done func(errs []error)) {
	create := req.Generation < 0
	c.do(req.Group, create, func(g *group) { g.txnCommit(req, done, time.Now()) }, func(err error) {
		if err == errNoGroup {
			err = ErrIllegalGeneration // a generation for a group that does not exist
		}
		done(errsOf(len(req.Offsets), err))
	})
}

// TxnEnded applies a transaction marker that reached offsets partition n:
// the producer's offsets there take effect (commit) or are dropped.
func (c *Coordinator) TxnEnded(n int32, pid int64, commit bool) {
	if n < 0 || int(n) >= len(c.shards) {
		return
	}
	s := c.shards[n]
	s.mu.Lock()
	groups := make([]*group, 0, len(s.groups))
	for _, g := range s.groups {
		groups = append(groups, g)
	}
	s.mu.Unlock()
	for _, g := range groups {
		select {
		case g.ops <- func(g *group) { g.txnEnded(pid, commit) }:
		case <-g.stopped:
		case <-c.stop:
			return
		}
	}
}

// txnCommit serves a TxnOffsetCommit for this group.
func (g *group) txnCommit(req TxnCommitRequest, done func([]error), now time.Time) {
	if err := g.validateTxnCommit(req); err != nil {
		done(errsOf(len(req.Offsets), err))
		return
	}
	errs := make([]error, len(req.Offsets))
	recs, idx, offs := g.offsetRecords(req.Offsets, now, -1, errs)
	if len(recs) == 0 {
		done(errs)
		return
	}
	g.appendBatch(encodeBatchOf(recs, now, req.ProducerID, req.Epoch), func(err error) {
		for j, i := range idx {
			if err != nil {
				errs[i] = err
				continue
			}
			if g.txnOffsets == nil {
				g.txnOffsets = make(map[int64]map[topicPartition]offset)
			}
			pending := g.txnOffsets[req.ProducerID]
			if pending == nil {
				pending = make(map[topicPartition]offset)
				g.txnOffsets[req.ProducerID] = pending
			}
			pending[topicPartition{req.Offsets[i].Topic, req.Offsets[i].Partition}] = offs[j]
		}
		done(errs)
	})
}

// validateTxnCommit checks who may commit in a transaction: with a
// generation or a member, only that member of the current generation;
// without, anybody (KIP-447). A rebalance does not stop it.
func (g *group) validateTxnCommit(req TxnCommitRequest) error {
	if g.state == StateDead {
		return ErrCoordinatorNotAvailable
	}
	instanceID := deref(req.InstanceID)
	if req.Generation < 0 && req.MemberID == "" && instanceID == "" {
		return nil
	}
	if err := g.validateMember(req.MemberID, instanceID); err != nil {
		return err
	}
	if req.Generation != g.generation {
		return ErrIllegalGeneration
	}
	return nil
}

// txnEnded applies the end of producer pid's transaction.
func (g *group) txnEnded(pid int64, commit bool) {
	pending, ok := g.txnOffsets[pid]
	if !ok {
		return
	}
	delete(g.txnOffsets, pid)
	if commit && g.state != StateDead {
		for tp, o := range pending {
			g.offsets[tp] = o
		}
	}
}

// txnPending reports whether a transaction not yet ended committed an
// offset of tp.
func (g *group) txnPending(tp topicPartition) bool {
	for _, pending := range g.txnOffsets {
		if _, ok := pending[tp]; ok {
			return true
		}
	}
	return false
}
