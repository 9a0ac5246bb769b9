package coordinator

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// actor is the plumbing of one group's goroutine: the operations it is fed,
// the completions of its appends, and how it stops. The group's state lives
// in group, which embeds it; only the goroutine running run touches either.
type actor struct {
	c   *Coordinator
	s   *shard
	p   partition.Partition // the offsets partition the group's records go to
	log zerolog.Logger

	ops     chan func(*group) // unbuffered: an operation is taken or not
	stop    chan struct{}     // closed by Resign (under the shard lock)
	stopped chan struct{}     // closed when the group takes no more operations
	exited  chan struct{}     // closed when the goroutine has returned

	// Append completions are queued by the partition's callbacks and run on
	// the group's goroutine.
	doneMu sync.Mutex
	doneQ  []func()
	notify chan struct{} // capacity 1
	// inflight counts appends whose completion has not run yet.
	inflight int

	// view is the group's overview for ListGroups, published after every
	// operation so that listing does not queue behind the groups.
	view atomic.Pointer[GroupOverview]

	// timer wakes the goroutine at the group's next deadline.
	timer *time.Timer
}

func (c *Coordinator) newGroup(s *shard, p partition.Partition, id string) *group {
	g := &group{
		actor: actor{
			c:       c,
			s:       s,
			p:       p,
			log:     c.log.With().Str("group", id).Logger(),
			ops:     make(chan func(*group)),
			stop:    make(chan struct{}),
			stopped: make(chan struct{}),
			exited:  make(chan struct{}),
			notify:  make(chan struct{}, 1),
		},
		id:          id,
		members:     make(map[string]*member),
		static:      make(map[string]string),
		pending:     make(map[string]time.Time),
		pendingSync: make(map[string]bool),
		supported:   make(map[string]int),
		offsets:     make(map[topicPartition]offset),
		commits:     make(map[topicPartition]int),
	}
	g.publish()
	return g
}

// run is the group's goroutine.
func (g *group) run() {
	defer close(g.exited)
	g.timer = time.NewTimer(time.Hour)
	defer g.timer.Stop()
	for {
		g.armTimer(time.Now())
		select {
		case op := <-g.ops:
			op(g)
		case <-g.notify:
			g.runCompletions()
		case <-g.timer.C:
			g.onTimer(time.Now())
		case <-g.stop:
			g.unload()
			g.drain()
			return
		}
		g.publish()
		if g.state == StateDead {
			g.retire()
			g.drain()
			return
		}
	}
}

// armTimer sets the timer to the group's next deadline.
func (g *group) armTimer(now time.Time) {
	if !g.timer.Stop() {
		select {
		case <-g.timer.C:
		default:
		}
	}
	if next := g.nextDeadline(); !next.IsZero() {
		g.timer.Reset(max(next.Sub(now), 0))
	}
}

// retire takes a dead group out of its shard, so that a later request for
// the same ID starts a new group, and refuses further operations.
func (g *group) retire() {
	g.s.mu.Lock()
	if g.s.groups[g.id] == g {
		delete(g.s.groups, g.id)
	}
	g.s.mu.Unlock()
	close(g.stopped)
}

// drain waits for the group's appends to complete, running their
// completions, so that every request they answer is answered.
func (g *group) drain() {
	for g.inflight > 0 {
		<-g.notify
		g.runCompletions()
	}
}

func (g *group) runCompletions() {
	g.doneMu.Lock()
	q := g.doneQ
	g.doneQ = nil
	g.doneMu.Unlock()
	for _, f := range q {
		f()
	}
}

// complete queues f to run on the group's goroutine. It never blocks, so the
// partition may call it from its commit path.
func (g *group) complete(f func()) {
	g.doneMu.Lock()
	g.doneQ = append(g.doneQ, f)
	g.doneMu.Unlock()
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// appendRecords writes recs to the group's offsets partition as one batch
// and runs then on the group's goroutine once the batch is durable (err
// nil) or has failed.
func (g *group) appendRecords(recs []kmsg.Record, now time.Time, then func(err error)) {
	g.appendBatch(encodeBatch(recs, now), then)
}

// appendBatch is appendRecords for an encoded batch (a transaction's
// offsets are a transactional batch of its producer).
func (g *group) appendBatch(b []byte, then func(err error)) {
	h, err := partition.CheckProduced(b)
	if err != nil {
		then(err)
		return
	}
	g.inflight++
	g.p.Append(b, h, partition.AppendOptions{Acks: partition.AcksAll}, func(res partition.AppendResult) {
		g.complete(func() {
			g.inflight--
			then(appendError(res.Err))
		})
	})
}

// publish stores the group's overview for ListGroups.
func (g *group) publish() {
	v := GroupOverview{Group: g.id, ProtocolType: g.protocolType, State: g.state.String()}
	if old := g.view.Load(); old == nil || *old != v {
		g.view.Store(&v)
	}
}

// appendError turns a failed append into what the group's clients are told:
// Kafka answers NOT_COORDINATOR when its log refuses a write (the partition
// moved, or its storage failed), so that clients look for the coordinator
// again.
func appendError(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: writing to the offsets partition: %v", ErrNotCoordinator, err)
}
