package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	// OnDamaged is told, once, that a read found this replica's log
	// damaged (ErrDamaged): the replica should be rebuilt from its peers.
	// It must not block.
	OnDamaged func(err error)
	// CatchUpFirst says the group existed while this broker had another
	// data directory: if this replica has no state, it takes no part in
	// elections until it has caught up with a leader.
	CatchUpFirst bool
	// Tune adjusts the Raft configuration (timeouts) before start.
	Tune   func(*raft.Config)
	Logger zerolog.Logger
	// OnLeadership is told when this replica becomes a ready leader (its
	// epoch) or stops leading; it must not block.
	OnLeadership func(leader bool, epoch int32)
	// OnNonvoters is told, while this replica leads, which replicas are
	// non-voters of the group (they lost their state and have not caught
	// up yet): about once a second and after each change. It may block
	// briefly.
	OnNonvoters func(ids []int32)
	// OnOutranked is told when this replica refuses its vote to a
	// candidate whose log is behind its own (see Outranked); it must not
	// block.
	OnOutranked  func()
	Decompressor kgo.Decompressor
	Now          func() time.Time
}

// Replicated is a partition whose log is a Raft group over its replicas.
// The leader checks idempotence, assigns offsets and stamps them (and its
// epoch, the Raft term) into each batch, and proposes batches packed into
// Raft entries; the committed entries are the partition log and the
// commit point is the high watermark.
type Replicated struct {
	core
	opts  ReplicatedOptions
	r     *raft.Raft
	logs  *raftlog.Store
	snaps *snapshotStore
	fsm   *replicaFSM
	trans raft.Transport

	// Guarded by core.mu:
	leading bool
	handing bool // a leadership transfer is under way: proposals wait
	// benched is set while this replica's Raft leads but the failure
	// detector finds a majority of the replicas' brokers down: it takes
	// no writes (see QuorumLost).
	benched bool
	// outstanding are the proposals replicating, oldest first.
	outstanding []*inflight
	gen         uint64 // counts leaderships, so stale work is never proposed
	epoch       int32
	queue       []queued
	wake        chan struct{}

	inflight chan *inflight
	// failedGen is the latest leadership one of whose proposals failed;
	// only answer uses it.
	failedGen uint64
	notify    chan bool
	relead    chan struct{} // the leadership must be taken up again
	// outranked is when (Unix nanoseconds) this replica last refused its
	// vote to a candidate whose log is behind its own (see watchVotes).
	outranked atomic.Int64
	votes     chan raft.Observation
	// damageSeen is set once damage was reported (see damaged).
	damageSeen atomic.Bool
	stop       chan struct{}
	wg         sync.WaitGroup
}

var _ Partition = (*Replicated)(nil)

// fenceable is a transport that can keep a member without state of its
// own out of elections (raftmux.Transport).
type fenceable interface {
	Fence(logs raftmux.LogReader, known bool, onLift func(reason string))
	Fenced() bool
	Unfence(reason string)
}

// memberKeeper is a transport that keeps a group's voters to members that
// hold its state (raftmux.Transport.KeepMembers).
type memberKeeper interface {
	KeepMembers(r *raft.Raft, self raft.ServerID, log zerolog.Logger, report func([]raft.ServerID), stop <-chan struct{})
}

// OpenReplicated starts this broker's replica of a partition.
func OpenReplicated(opts ReplicatedOptions) (*Replicated, error) {
	logs, err := raftlog.Open(opts.Store, opts.Group)
	if err != nil {
		return nil, err
	}
	logs.CountsAsData()
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
	p.core = newCore(opts.Decompressor, opts.Now, p.committed)
	p.txnCut = func() (int64, []AbortedTxn) {
		txns := p.fsm.cloneTxns()
		return txns.stable(p.fsm.view().next), txns.aborted
	}
	p.fsm = newReplicaFSM(p.watchers.notify)

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
	if err := checkLog(logs, opts.Snapshots); err != nil {
		return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
	}
	has, err := raft.HasExistingState(logs, logs, p.snaps)
	if err != nil {
		return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
	}
	// A replica that held data before, on a data directory since lost,
	// votes and leads only once it has caught up (see
	// raftmux.Transport.Fence), even if it restarts before then: the mark
	// is recorded before the group is bootstrapped.
	pending, err := logs.CatchingUp()
	if err != nil {
		return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
	}
	f, canFence := opts.Transport.(fenceable)
	fence := canFence && (pending || (!has && opts.CatchUpFirst))
	if fence && !pending {
		if err := logs.SetCatchingUp(true); err != nil {
			return nil, fmt.Errorf("partition: %s: %w", opts.Group, err)
		}
	}
	if !has {
		if err := raft.BootstrapCluster(cfg, logs, logs, p.snaps, opts.Transport, raft.Configuration{Servers: opts.Servers}); err != nil {
			return nil, fmt.Errorf("partition: bootstrapping %s: %w", opts.Group, err)
		}
	}
	if fence {
		log := opts.Logger
		log.Warn().Str("group", opts.Group).Msg("replica lost its data with the data directory: it takes no part in elections until it has caught up with a leader")
		f.Fence(logs, true, func(reason string) {
			if err := logs.SetCatchingUp(false); err != nil {
				log.Warn().Err(err).Str("group", opts.Group).Msg("replica's catch-up not recorded: it will catch up again after a restart")
			}
			log.Info().Str("group", opts.Group).Str("reason", reason).Msg("replica takes part in elections again")
		})
	}
	if p.r, err = raft.NewRaft(cfg, p.fsm, logs, logs, p.snaps, opts.Transport); err != nil {
		return nil, fmt.Errorf("partition: starting %s: %w", opts.Group, err)
	}
	p.snaps.serving.Store(true)
	if r, ok := opts.Transport.(interface {
		OnRejoin(func(), func(uint64) bool)
	}); ok {
		r.OnRejoin(p.nudge, func(last uint64) bool { return last < p.r.CommitIndex() })
	}
	p.votes = make(chan raft.Observation, 4)
	obs := raft.NewObserver(p.votes, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RequestVoteRequest)
		return ok
	})
	p.r.RegisterObserver(obs)
	p.wg.Add(4)
	go p.watchVotes(obs)
	go p.observe()
	go p.flush()
	go p.answer()
	if k, ok := opts.Transport.(memberKeeper); ok {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			k.KeepMembers(p.r, opts.ID, opts.Logger.With().Str("group", opts.Group).Logger(), p.reportNonvoters, p.stop)
		}()
	}
	return p, nil
}

// reportNonvoters passes the group's non-voters on to OnNonvoters.
func (p *Replicated) reportNonvoters(ids []raft.ServerID) {
	if p.opts.OnNonvoters == nil {
		return
	}
	out := make([]int32, 0, len(ids))
	for _, id := range ids {
		if n, err := strconv.ParseInt(string(id), 10, 32); err == nil {
			out = append(out, int32(n))
		}
	}
	p.opts.OnNonvoters(out)
}

// checkLog reads the entries of a group's log that Raft reads when it
// starts (those after the latest snapshot; Raft panics on one it cannot
// read), and the first one: an entry not stored whole is damage, reported
// as ErrDamaged so that the replica can be rebuilt rather than crash the
// broker.
func checkLog(logs *raftlog.Store, snaps raft.SnapshotStore) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if last == 0 {
		return nil
	}
	from := first
	if metas, err := snaps.List(); err == nil && len(metas) > 0 && metas[0].Index+1 > from {
		from = metas[0].Index + 1
	}
	var l raft.Log
	if err := logs.GetLog(first, &l); err != nil {
		return fmt.Errorf("%w: %w: entry %d: %w", ErrStorage, ErrDamaged, first, err)
	}
	for i := from; i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("%w: %w: entry %d: %w", ErrStorage, ErrDamaged, i, err)
		}
	}
	return nil
}

// damaged reports damage found in this replica's log, once, and returns
// err.
func (p *Replicated) damaged(err error) error {
	if p.damageSeen.CompareAndSwap(false, true) && p.opts.OnDamaged != nil {
		p.opts.OnDamaged(err)
	}
	return err
}

// Offsets implements Partition.
func (p *Replicated) Offsets() Offsets {
	v := p.fsm.view()
	p.mu.Lock()
	defer p.mu.Unlock()
	off := Offsets{LogStart: v.logStart, HighWatermark: v.next, LogEnd: v.next, LeaderEpoch: v.epoch, LastStable: v.stable}
	if p.leading {
		off.LogEnd, off.LeaderEpoch = p.logEnd, p.epoch
	}
	return off
}

// Read implements Partition. Only the leader serves reads.
func (p *Replicated) Read(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	return p.read(offset, maxBytes, minOne, dst, false)
}

// ReadCommitted implements Partition.
func (p *Replicated) ReadCommitted(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	return p.read(offset, maxBytes, minOne, dst, true)
}

func (p *Replicated) read(offset int64, maxBytes int, minOne bool, dst []byte, stable bool) (ReadResult, error) {
	off := p.Offsets()
	res := ReadResult{Offsets: off, Records: dst}
	if !p.IsLeader() {
		return res, ErrNotLeader
	}
	end := off.HighWatermark
	if stable {
		end = off.LastStable
	}
	if empty, err := readRange(offset, off); empty || offset >= end || err != nil {
		return res, err
	}
	start := len(dst)
	last := offset - 1
	err := p.eachBatch(offset, func(b []byte, h BatchHeader) bool {
		base := int64(binary.BigEndian.Uint64(b))
		if base >= end || len(dst)-start+len(b) > maxBytes && !(minOne && len(dst) == start) {
			return false
		}
		dst = append(dst, b...)
		last = base + int64(h.LastOffsetDelta)
		return true
	})
	res.Records = dst
	if stable && last >= offset {
		res.Aborted = p.fsm.abortedIn(offset, last+1)
	}
	return res, err
}

// eachBatch calls fn for each committed batch holding offset or after.
func (p *Replicated) eachBatch(offset int64, fn func(b []byte, h BatchHeader) bool) error {
	for _, m := range p.fsm.entriesFrom(offset) {
		var l raft.Log
		if err := p.logs.GetLog(m.Index, &l); errors.Is(err, raft.ErrLogNotFound) {
			return fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		} else if err != nil {
			// A committed entry the store cannot give back whole.
			return p.damaged(fmt.Errorf("%w: %w: reading entry %d: %w", ErrStorage, ErrDamaged, m.Index, err))
		}
		for data := l.Data; len(data) > 0; {
			h, err := ParseHeader(data)
			if err != nil {
				return p.damaged(fmt.Errorf("%w: %w: entry %d: %w", ErrStorage, ErrDamaged, m.Index, err))
			}
			b := data[:h.Size()]
			data = data[h.Size():]
			if int64(binary.BigEndian.Uint64(b))+int64(h.LastOffsetDelta) < offset {
				continue
			}
			if err := checkStored(b); err != nil {
				return p.damaged(err)
			}
			if !fn(b, h) {
				return nil
			}
		}
	}
	return nil
}

// committed is the core's view of the log: its applied Raft entries.
func (p *Replicated) committed() (units, int64) {
	start := p.fsm.view().logStart
	return entryUnits{logs: p.logs, entries: p.fsm.entriesFrom(start)}, start
}

// entryUnits are the applied entries of a Replicated partition.
type entryUnits struct {
	logs    *raftlog.Store
	entries []entryMeta
}

func (u entryUnits) len() int          { return len(u.entries) }
func (u entryUnits) last(i int) int64  { return u.entries[i].Last }
func (u entryUnits) maxTS(i int) int64 { return u.entries[i].MaxTS }
func (u entryUnits) size(i int) int64  { return int64(u.entries[i].Size) }

func (u entryUnits) read(i, j int, fn func(data []byte) error) error {
	for _, m := range u.entries[i:j] {
		var l raft.Log
		if err := u.logs.GetLog(m.Index, &l); err != nil {
			return fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		}
		if err := fn(l.Data); err != nil {
			return err
		}
	}
	return nil
}

// EndOffsetForEpoch implements Partition.
func (p *Replicated) EndOffsetForEpoch(epoch int32) (int32, int64) {
	return p.fsm.endOffsetForEpoch(epoch)
}

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
		if start, ok := p.retentionStart(now, retention, retentionBytes); ok {
			if err := p.SetLogStart(start); err != nil {
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
	end, keys, err := p.compactPlan(entryUnits{logs: p.logs, entries: entries}, now, o, &res)
	if err != nil || end == 0 {
		return res, err
	}
	keys.keepMarkers = true // see compactMarker
	clean := entries[:end]
	var l raft.Log
	cutoff := now.Add(-o.DeleteRetention).UnixMilli()
	sizes := make(map[uint64]int32)
	for _, m := range clean {
		if err := p.logs.GetLog(m.Index, &l); err != nil {
			return res, fmt.Errorf("%w: reading entry %d: %w", ErrStorage, m.Index, err)
		}
		out, changed, err := p.compactor.compactUnit(&keys, l.Data, cutoff, true, &res)
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
	p.fsm.forgetAborted(keys.removedAborts)
	p.compacted(clean[len(clean)-1].Last + 1)
	return res, nil
}
