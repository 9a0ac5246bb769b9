package partition

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// queued is a batch (or a duplicate's answer) waiting to be proposed.
type queued struct {
	data []byte // nil for an answer that only waits for what is before it
	res  AppendResult
	done func(AppendResult)
}

// inflight is one proposal being replicated, with the appends it answers
// and the leadership (gen) that made it.
type inflight struct {
	f     raft.Future
	gen   uint64
	items []queued
	// answered is set by whoever answers the items: the future's outcome,
	// or QuorumLost failing them first.
	answered atomic.Bool
}

// Append implements Partition. acks=1 and acks=-1 are both answered after
// the batch is committed by a majority of the replicas.
func (p *Replicated) Append(b []byte, h BatchHeader, opts AppendOptions, done func(AppendResult)) {
	p.mu.Lock()
	if p.closed || !p.leading {
		err := ErrNotLeader
		if p.closed {
			err = ErrClosed
		}
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: err})
		return
	}
	logStart := p.fsm.view().logStart
	if err := p.opts.Store.Reserve(len(b)); err != nil {
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: logStart, Err: fmt.Errorf("%w: %w", ErrStorage, err)})
		return
	}
	st, err := p.stamp(b, &h, opts, p.epoch)
	switch {
	case err != nil:
		p.mu.Unlock()
		done(AppendResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: logStart, Err: err})
		return
	case st.dup:
		// Answered once everything before it, the original included, is
		// committed.
		p.enqueue(queued{res: AppendResult{BaseOffset: st.base, LogAppendTime: st.appendTime, LogStartOffset: logStart}, done: done})
	default:
		p.enqueue(queued{data: b, res: AppendResult{BaseOffset: st.base, LogAppendTime: st.appendTime, LogStartOffset: logStart}, done: done})
	}
	p.mu.Unlock()
}

// enqueue adds to the proposal queue; p.mu is held.
func (p *Replicated) enqueue(q queued) {
	p.queue = append(p.queue, q)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// flush packs queued batches into Raft entries, in offset order.
func (p *Replicated) flush() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		}
		for p.proposeNext() {
		}
	}
}

// proposeNext proposes one entry from the queue and reports whether there
// may be more. It proposes under p.mu, checking that the leadership that
// stamped the batches is still the current one: a batch stamped in a lost
// term must never reach the log of a later one.
func (p *Replicated) proposeNext() bool {
	p.mu.Lock()
	if len(p.queue) == 0 || !p.leading || p.handing {
		p.mu.Unlock()
		return false
	}
	n, size := 0, 0
	for n < len(p.queue) && (n == 0 || size+len(p.queue[n].data) <= maxEntryBytes) {
		size += len(p.queue[n].data)
		n++
	}
	items := append([]queued(nil), p.queue[:n]...)
	p.queue = append(p.queue[:0], p.queue[n:]...)
	var f raft.Future
	if size == 0 {
		f = p.r.Barrier(0)
	} else {
		data := make([]byte, 0, size)
		for _, it := range items {
			data = append(data, it.data...)
		}
		f = p.r.ApplyLog(raft.Log{Data: data}, 0)
	}
	more := len(p.queue) > 0
	in := &inflight{f: f, gen: p.gen, items: items}
	p.outstanding = append(p.outstanding, in)
	p.mu.Unlock()
	select {
	case p.inflight <- in:
	case <-p.stop:
		for _, it := range items {
			it.done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: ErrClosed})
		}
		return false
	}
	return more
}

// answer completes proposals in the order they were made.
func (p *Replicated) answer() {
	defer p.wg.Done()
	for {
		var in *inflight
		select {
		case in = <-p.inflight:
		case <-p.stop:
			// Raft is shut down: every future left fails at once.
			for {
				select {
				case in = <-p.inflight:
					p.complete(in)
				default:
					return
				}
			}
		}
		p.complete(in)
	}
}

func (p *Replicated) complete(in *inflight) {
	w := startWatchdog(nudgeEvery, p.nudge)
	err := in.f.Error()
	w.stop()
	p.mu.Lock()
	if i := slices.Index(p.outstanding, in); i >= 0 {
		p.outstanding = slices.Delete(p.outstanding, i, i+1)
	}
	p.mu.Unlock()
	if af, ok := in.f.(raft.ApplyFuture); ok && err == nil {
		if rerr, isErr := af.Response().(error); isErr {
			err = rerr
		}
	}
	switch {
	case err != nil:
		if !errors.Is(err, ErrStorage) {
			err = fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		p.opts.Logger.Debug().Err(err).Str("group", p.opts.Group).Msg("proposal failed")
		if in.gen > p.failedGen {
			p.failedGen = in.gen
			p.restart(in.gen)
		}
	case in.gen <= p.failedGen:
		// Its offsets, or the batch a duplicate's answer names, may
		// follow what the failed proposal never wrote.
		err = fmt.Errorf("%w: an earlier write of this leadership failed", ErrNotLeader)
	}
	if !in.answered.CompareAndSwap(false, true) {
		return // failed already (QuorumLost)
	}
	for _, it := range in.items {
		res := it.res
		if err != nil {
			res = AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: err}
		}
		it.done(res)
	}
}

// restart ends leadership gen after one of its proposals failed while
// Raft may still lead (a leadership transfer refused it, say): the
// offsets and producer sequences it handed out ran ahead of the log. The
// leadership is taken up again from the FSM once every proposal before
// is settled, as after an election.
func (p *Replicated) restart(gen uint64) {
	if p.stepDown(gen) {
		select {
		case p.relead <- struct{}{}:
		default:
		}
	}
}

// nudge appends a barrier, which makes Raft send to every follower what
// it lacks. When replication to a follower fails, or it needs entries the
// leader no longer has, hashicorp/raft stops pipelining to it and sends
// again only when the next entry arrives or CommitTimeout passes (tens of
// seconds for the broker's partitions). A proposal that needs that
// follower for its quorum, with no traffic behind it, would wait that long.
func (p *Replicated) nudge() {
	if p.r.State() == raft.Leader {
		p.r.Barrier(nudgeEvery) // its future is not needed: only the append is
	}
}

// watchdog calls f every period until stopped.
type watchdog struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func startWatchdog(period time.Duration, f func()) *watchdog {
	w := &watchdog{}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(period, func() {
		f()
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.stopped {
			w.t.Reset(period)
		}
	})
	return w
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}
