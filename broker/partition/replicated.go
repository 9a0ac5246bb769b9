package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/raftmux"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// maxEntryBytes bounds the batches packed into one Raft entry.
	maxEntryBytes = 1 << 20
	// maxInflightEntries bounds entries proposed but not yet answered.
	maxInflightEntries = 64
	barrierTimeout     = 30 * time.Second
	// leadRetry is how long a new leader waits before it tries its
	// barrier again after Raft refused it (a leadership transfer was
	// under way).
	leadRetry = 100 * time.Millisecond
	// nudgeEvery is how long a proposal waits for its commit before Raft
	// is nudged (see nudge), and then again after each further wait.
	nudgeEvery = 500 * time.Millisecond
)

// ReplicatedOptions configure a partition replicated by a Raft group.
type ReplicatedOptions struct {
	ID        raft.ServerID
	Group     string        // the Raft group's name, unique within Store
	Store     storage.Store // holds the Raft log and stable state
	Transport raft.Transport
	Snapshots raft.SnapshotStore
	// Servers is the replica set; it bootstraps the group the first time
	// and must be the same on every replica.
	Servers []raft.Server
	// Tune adjusts the Raft configuration (timeouts) before start.
	Tune   func(*raft.Config)
	Logger zerolog.Logger
	// OnLeadership is told when this replica becomes a ready leader (its
	// epoch) or stops leading; it must not block.
	OnLeadership func(leader bool, epoch int32)
	Decompressor kgo.Decompressor
	Now          func() time.Time
}

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
}

// Replicated is a partition whose log is a Raft group over its replicas.
// The leader checks idempotence, assigns offsets and stamps them (and its
// epoch, the Raft term) into each batch, and proposes batches packed into
// Raft entries; the committed entries are the partition log and the
// commit point is the high watermark.
type Replicated struct {
	opts  ReplicatedOptions
	r     *raft.Raft
	logs  *raftlog.Store
	snaps *snapshotStore
	fsm   *replicaFSM
	trans raft.Transport

	mu        sync.Mutex
	closed    bool
	leading   bool
	handing   bool   // a leadership transfer is under way: proposals wait
	gen       uint64 // counts leaderships, so stale work is never proposed
	epoch     int32
	logEnd    int64
	producers map[int64]*producer
	queue     []queued
	wake      chan struct{}
	cleanedTo int64 // compaction has run below this offset
	compactor *compactor

	inflight chan *inflight
	// failedGen is the latest leadership one of whose proposals failed;
	// only answer uses it.
	failedGen uint64
	notify    chan bool
	relead    chan struct{} // the leadership must be taken up again
	stop      chan struct{}
	wg        sync.WaitGroup
	watchers  watchSet
}

var _ Partition = (*Replicated)(nil)

// OpenReplicated starts this broker's replica of a partition.
func OpenReplicated(opts ReplicatedOptions) (*Replicated, error) {
	if opts.Decompressor == nil {
		opts.Decompressor = kgo.DefaultDecompressor()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logs, err := raftlog.Open(opts.Store, opts.Group)
	if err != nil {
		return nil, err
	}
	p := &Replicated{
		opts:     opts,
		logs:     logs,
		trans:    opts.Transport,
		wake:     make(chan struct{}, 1),
		inflight: make(chan *inflight, maxInflightEntries),
		notify:   make(chan bool, 16),
		relead:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	p.fsm = newReplicaFSM(p.watchers.notify)
	p.compactor = newCompactor(opts.Decompressor)

	cfg := raft.DefaultConfig()
	cfg.LocalID = opts.ID
	cfg.Logger = raftmux.Logger(opts.Logger.With().Str("group", opts.Group).Logger())
	cfg.NotifyCh = p.notify
	// BatchApplyCh stays off: futures still buffered in Raft's apply
	// channel at shutdown are never answered, which would leave Close
	// waiting forever. Proposals are already packed into large entries.
	cfg.MaxAppendEntries = 256
	// Raft must never drop entries on its own: they are the partition log,
	// which only Kafka retention shortens.
	cfg.TrailingLogs = 1 << 62
	if opts.Tune != nil {
		opts.Tune(cfg)
	}
	p.snaps = &snapshotStore{SnapshotStore: opts.Snapshots, logs: logs}
	if err := recoverStaged(logs, opts.Snapshots); err != nil {
		return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
	}
	has, err := raft.HasExistingState(logs, logs, p.snaps)
	if err != nil {
		return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
	}
	if !has {
		if err := raft.BootstrapCluster(cfg, logs, logs, p.snaps, opts.Transport, raft.Configuration{Servers: opts.Servers}); err != nil {
			return nil, fmt.Errorf("partition: bootstrapping %s: %w", opts.Group, err)
		}
	}
	if p.r, err = raft.NewRaft(cfg, p.fsm, logs, logs, p.snaps, opts.Transport); err != nil {
		return nil, fmt.Errorf("partition: starting %s: %w", opts.Group, err)
	}
	p.snaps.serving.Store(true)
	p.wg.Add(3)
	go p.observe()
	go p.flush()
	go p.answer()
	return p, nil
}

// observe follows leadership.
func (p *Replicated) observe() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case leader := <-p.notify:
			if !leader {
				p.stepDown(0)
				continue
			}
			p.lead()
		case <-p.relead:
			p.lead()
		}
	}
}

// lead takes up the leadership of the Raft leader. It first waits for a
// barrier, so that every entry before it is applied and the FSM knows the
// offsets and producer sequences to continue from; offsets and producer
// state are then taken from the FSM, never carried over.
func (p *Replicated) lead() {
	for {
		if p.r.State() != raft.Leader {
			return // leadership was lost again; its signal follows
		}
		if err := p.r.Barrier(barrierTimeout).Error(); err == nil {
			break
		}
		// Raft refuses the barrier while a leadership transfer is under
		// way; if the transfer fails, this replica still leads.
		t := time.NewTimer(leadRetry)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
	p.mu.Lock()
	if p.closed || p.leading || p.r.State() != raft.Leader {
		p.mu.Unlock()
		return
	}
	v := p.fsm.view()
	p.leading = true
	p.gen++
	p.epoch = int32(p.r.CurrentTerm())
	p.logEnd = v.next
	p.producers = p.fsm.cloneProducers()
	epoch := p.epoch
	p.mu.Unlock()
	p.opts.Logger.Debug().Str("group", p.opts.Group).Int32("epoch", epoch).Int64("next", v.next).Msg("partition leader")
	if p.opts.OnLeadership != nil {
		p.opts.OnLeadership(true, epoch)
	}
}

// stepDown stops leading: appends not yet proposed fail so their clients
// look for the new leader. With gen other than 0 it stops only that
// leadership, and reports whether it did.
func (p *Replicated) stepDown(gen uint64) bool {
	p.mu.Lock()
	if gen != 0 && (gen != p.gen || !p.leading) {
		p.mu.Unlock()
		return false
	}
	was := p.leading
	p.leading = false
	p.gen++
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, it := range q {
		it.done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: ErrNotLeader})
	}
	if was && p.opts.OnLeadership != nil {
		p.opts.OnLeadership(false, -1)
	}
	return true
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
	var pr *producer
	if h.Idempotent() {
		pr = p.producers[h.ProducerID]
		dup, err := pr.check(&h)
		if err != nil {
			p.mu.Unlock()
			done(AppendResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: logStart, Err: err})
			return
		}
		if dup != nil {
			// Answered once everything before it, the original included,
			// is committed.
			p.enqueue(queued{res: AppendResult{BaseOffset: dup.baseOffset, LogAppendTime: dup.appendTime, LogStartOffset: logStart}, done: done})
			p.mu.Unlock()
			return
		}
	}
	base := p.logEnd
	appendTime := int64(-1)
	if opts.LogAppendTime {
		appendTime = p.opts.Now().UnixMilli()
	}
	stamp(b, base, p.epoch, appendTime)
	p.logEnd = base + int64(h.LastOffsetDelta) + 1
	if h.Idempotent() {
		if pr == nil {
			pr = &producer{epoch: h.ProducerEpoch}
			p.producers[h.ProducerID] = pr
		}
		pr.record(&h, base, appendTime)
	}
	p.enqueue(queued{data: b, res: AppendResult{BaseOffset: base, LogAppendTime: appendTime, LogStartOffset: logStart}, done: done})
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
	gen := p.gen
	p.mu.Unlock()
	select {
	case p.inflight <- &inflight{f: f, gen: gen, items: items}:
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

// IsLeader implements Partition: whether this replica leads, with every
// earlier entry applied, and so accepts writes.
func (p *Replicated) IsLeader() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leading
}

// Role reports this replica's Raft state, the leader it knows of (if any)
// and when it last heard from a leader.
func (p *Replicated) Role() (raft.RaftState, raft.ServerID, time.Time) {
	_, id := p.r.LeaderWithID()
	return p.r.State(), id, p.r.LastContact()
}

// Campaign makes this replica, if it follows, stand for election at once
// (see raftmux.Transport.Campaign). The broker calls it when the leader's
// broker is gone, rather than leave it to Raft's election timeout.
func (p *Replicated) Campaign() error {
	c, ok := p.trans.(interface{ Campaign(raft.ServerID) error })
	if !ok {
		return fmt.Errorf("partition: %s: the transport cannot start an election", p.opts.Group)
	}
	if p.r.State() != raft.Follower {
		return nil
	}
	if err := c.Campaign(p.opts.ID); err != nil {
		return fmt.Errorf("partition: %s: starting an election: %w", p.opts.Group, err)
	}
	return nil
}

// Nudge makes a leader send every follower what it lacks now (see nudge):
// the broker calls it when a follower's broker is back.
func (p *Replicated) Nudge() { p.nudge() }

// handOffWait bounds how long HandOff waits for the transfer.
const handOffWait = 5 * time.Second

// HandOff moves the leadership to another replica, if this one leads; it
// returns when the transfer is done, has failed, or after handOffWait
// (Raft's own bound is the election timeout), whichever is first.
func (p *Replicated) HandOff() {
	if p.r.State() != raft.Leader {
		return
	}
	defer p.hold()()
	f := p.r.LeadershipTransfer()
	done := make(chan struct{})
	p.wg.Add(1)
	go func() { // Raft answers by its timeout or when the replica stops leading
		defer p.wg.Done()
		_ = f.Error()
		close(done)
	}()
	t := time.NewTimer(handOffWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// TransferTo moves leadership to the replica id at addr, once it has
// caught up; it waits for the transfer, bounded by Raft's election timeout.
// The replica must answer this leader within a heartbeat timeout: Raft
// would otherwise stop accepting writes until its transfer timed out.
func (p *Replicated) TransferTo(id raft.ServerID, addr raft.ServerAddress) error {
	if !p.answering(addr) {
		return fmt.Errorf("partition: moving leadership of %s to %s: %w", p.opts.Group, id, ErrReplicaUnreachable)
	}
	defer p.hold()()
	if err := p.r.LeadershipTransferToServer(id, addr).Error(); err != nil {
		return fmt.Errorf("partition: moving leadership of %s to %s: %w", p.opts.Group, id, err)
	}
	return nil
}

// answerWindow is how recently a transfer's target must have answered.
const answerWindow = 2 * time.Second

// answering reports whether the replica at addr has answered this
// replica's Raft traffic within answerWindow, waiting up to that long for
// it to; heartbeats go out at once for it (VerifyLeader sends them), as
// idle groups heartbeat only every few seconds. Without a transport that
// tells, it reports true.
func (p *Replicated) answering(addr raft.ServerAddress) bool {
	t, ok := p.trans.(interface {
		Answered(raft.ServerAddress) time.Time
		Answering(raft.ServerAddress, time.Duration) bool
	})
	if !ok {
		return true
	}
	if time.Since(t.Answered(addr)) > answerWindow {
		p.r.VerifyLeader() // its future is not needed: only the heartbeats are
	}
	return t.Answering(addr, answerWindow)
}

// hold keeps appends queued, rather than proposed, while a leadership
// transfer is under way (Raft refuses proposals then); it returns the
// function that releases them, to the new leadership's step-down or to
// this one's proposals.
func (p *Replicated) hold() func() {
	p.mu.Lock()
	p.handing = true
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.handing = false
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Offsets implements Partition.
func (p *Replicated) Offsets() Offsets {
	v := p.fsm.view()
	p.mu.Lock()
	defer p.mu.Unlock()
	off := Offsets{LogStart: v.logStart, HighWatermark: v.next, LogEnd: v.next, LeaderEpoch: v.epoch}
	if p.leading {
		off.LogEnd, off.LeaderEpoch = p.logEnd, p.epoch
	}
	return off
}

// Read implements Partition. Only the leader serves reads.
func (p *Replicated) Read(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	off := p.Offsets()
	res := ReadResult{Offsets: off, Records: dst}
	if !p.IsLeader() {
		return res, ErrNotLeader
	}
	if empty, err := readRange(offset, off); empty || err != nil {
		return res, err
	}
	start := len(dst)
	err := p.eachBatch(offset, func(b []byte, _ BatchHeader) bool {
		if len(dst)-start+len(b) > maxBytes && !(minOne && len(dst) == start) {
			return false
		}
		dst = append(dst, b...)
		return true
	})
	res.Records = dst
	return res, err
}

// eachBatch calls fn for each committed batch holding offset or after.
func (p *Replicated) eachBatch(offset int64, fn func(b []byte, h BatchHeader) bool) error {
	for _, m := range p.fsm.entriesFrom(offset) {
		var l raft.Log
		if err := p.logs.GetLog(m.Index, &l); err != nil {
			return fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		}
		for data := l.Data; len(data) > 0; {
			h, err := ParseHeader(data)
			if err != nil {
				return fmt.Errorf("%w: entry %d: %w", ErrStorage, m.Index, err)
			}
			b := data[:h.Size()]
			data = data[h.Size():]
			if int64(binary.BigEndian.Uint64(b))+int64(h.LastOffsetDelta) < offset {
				continue
			}
			if !fn(b, h) {
				return nil
			}
		}
	}
	return nil
}

// OffsetForTime implements Partition.
func (p *Replicated) OffsetForTime(ts int64) (int64, int64, error) {
	offset, found := int64(-1), int64(-1)
	var werr error
	err := p.eachBatch(p.fsm.view().logStart, func(b []byte, h BatchHeader) bool {
		if h.MaxTimestamp < ts {
			return true
		}
		werr = recordTimes(b, p.opts.Decompressor, func(o, t int64) bool {
			if t >= ts {
				offset, found = o, t
				return false
			}
			return true
		})
		return werr == nil && offset < 0
	})
	if err == nil {
		err = werr
	}
	return offset, found, err
}

// MaxTimestamp implements Partition.
func (p *Replicated) MaxTimestamp() (int64, int64, error) {
	var best []byte
	bestTS := int64(-1)
	err := p.eachBatch(p.fsm.view().logStart, func(b []byte, h BatchHeader) bool {
		if best == nil || h.MaxTimestamp > bestTS {
			best, bestTS = b, h.MaxTimestamp
		}
		return true
	})
	if err != nil || best == nil {
		return -1, -1, err
	}
	offset := int64(-1)
	err = recordTimes(best, p.opts.Decompressor, func(o, t int64) bool {
		if t == bestTS {
			offset = o
			return false
		}
		return true
	})
	return offset, bestTS, err
}

// EndOffsetForEpoch implements Partition.
func (p *Replicated) EndOffsetForEpoch(epoch int32) (int32, int64) {
	return p.fsm.endOffsetForEpoch(epoch)
}

// Watch implements Partition.
func (p *Replicated) Watch(ch chan<- struct{}) { p.watchers.add(ch) }

// Unwatch implements Partition.
func (p *Replicated) Unwatch(ch chan<- struct{}) { p.watchers.remove(ch) }

// SetLogStart implements Partition: the new start is replicated.
func (p *Replicated) SetLogStart(offset int64) error {
	if !p.IsLeader() {
		return ErrNotLeader
	}
	f := p.r.ApplyLog(raft.Log{Data: binary.BigEndian.AppendUint64(nil, uint64(offset)), Extensions: []byte{ctrlSetLogStart}}, barrierTimeout)
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// EnforceRetention implements Partition. The leader replicates the new log
// start; every replica then deletes the Raft entries below it.
func (p *Replicated) EnforceRetention(now time.Time, retention time.Duration, retentionBytes int64) (int64, error) {
	if p.IsLeader() && (retention >= 0 || retentionBytes >= 0) {
		entries := p.fsm.entriesFrom(p.fsm.view().logStart)
		drop := retentionDrop(len(entries), func(i int) int64 { return int64(entries[i].Size) }, func(i int) int64 { return entries[i].MaxTS },
			now, retention, retentionBytes)
		if drop > 0 {
			if err := p.SetLogStart(entries[drop-1].Last + 1); err != nil {
				return 0, err
			}
		}
	}
	if err := p.truncate(); err != nil {
		return 0, err
	}
	return p.fsm.view().logStart, nil
}

// truncate deletes the Raft entries that hold only offsets below the log
// start. A snapshot taken first stands in for them: Raft restarts from it,
// and sends it (with the entries it still refers to) to a replica that
// needs deleted entries.
func (p *Replicated) truncate() error {
	first, err := p.logs.FirstIndex()
	if err != nil || first == 0 {
		return err
	}
	start := p.fsm.view().logStart
	if entries := p.fsm.entriesFrom(start); len(entries) > 0 && entries[0].Index <= first || len(entries) == 0 && start == 0 {
		return nil // nothing below the log start is held (or ever was)
	}
	if err := p.r.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("partition: snapshot of %s: %w", p.opts.Group, err)
	}
	list, err := p.snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	snap := list[0].Index
	keep := snap + 1
	// Read again: entries written before the snapshot are at or below
	// its index and must stay.
	if entries := p.fsm.entriesFrom(p.fsm.view().logStart); len(entries) > 0 {
		keep = min(keep, entries[0].Index)
	}
	if keep = p.snaps.keepFrom(keep); keep <= first {
		return nil
	}
	if err := p.logs.DeleteRange(first, keep-1); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

// Size implements Partition.
func (p *Replicated) Size() int64 {
	var n int64
	for _, m := range p.fsm.entriesFrom(p.fsm.view().logStart) {
		n += int64(m.Size)
	}
	return n
}

// Close implements Partition: the replica leaves the group's work to the
// others. It is safe to call more than once.
func (p *Replicated) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	if w, ok := p.trans.(interface{ StopWaiting() }); ok {
		w.StopWaiting() // replication may be waiting for a peer
	}
	err := p.r.Shutdown().Error()
	close(p.stop)
	p.wg.Wait()
	p.stepDown(0)
	if c, ok := p.trans.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	if err != nil {
		return fmt.Errorf("partition: shutting down %s: %w", p.opts.Group, err)
	}
	return nil
}

// Delete implements Partition: the replica stops and drops its log.
func (p *Replicated) Delete() error {
	if err := p.Close(); err != nil {
		return err
	}
	return p.logs.Drop()
}

// Compact implements Partition. Every replica compacts its own copy of the
// committed entries, as every Kafka replica cleans its own log; an entry
// keeps its first and last batch, so the offsets it covers stay known.
func (p *Replicated) Compact(now time.Time, o CompactOptions) (CompactResult, error) {
	var res CompactResult
	entries := p.fsm.entriesFrom(p.fsm.view().logStart)
	p.mu.Lock()
	cleanedTo := p.cleanedTo
	p.mu.Unlock()
	end, total := cleanablePart(len(entries), func(i int) int64 { return int64(entries[i].Size) },
		func(i int) int64 { return entries[i].Last }, func(i int) int64 { return entries[i].MaxTS }, cleanedTo, now, o)
	if end == 0 {
		return res, nil
	}
	clean := entries[:end]
	res.Ran, res.BytesBefore = true, total
	keys := make(keyMap)
	var l raft.Log
	for _, m := range clean {
		if err := p.logs.GetLog(m.Index, &l); err != nil {
			return res, fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		}
		if err := p.compactor.scanUnit(keys, l.Data); err != nil {
			return res, fmt.Errorf("partition: compaction scan of entry %d: %w", m.Index, err)
		}
	}
	cutoff := now.Add(-o.DeleteRetention).UnixMilli()
	sizes := make(map[uint64]int32)
	for _, m := range clean {
		if err := p.logs.GetLog(m.Index, &l); err != nil {
			return res, fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		}
		out, changed, err := p.compactor.compactUnit(keys, l.Data, cutoff, true, &res)
		if err != nil {
			return res, fmt.Errorf("partition: compacting entry %d: %w", m.Index, err)
		}
		size := m.Size
		if changed {
			if err := p.logs.Rewrite(m.Index, out); err != nil {
				return res, err
			}
			size = int32(len(out))
			sizes[m.Index] = size
		}
		res.BytesAfter += int64(size)
	}
	p.fsm.resize(sizes)
	p.mu.Lock()
	p.cleanedTo = max(p.cleanedTo, clean[len(clean)-1].Last+1)
	p.mu.Unlock()
	return res, nil
}
