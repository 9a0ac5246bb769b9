package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Run processes cfg.Input until ctx is done, then commits what it has and
// returns nil; it returns an error only when it cannot go on.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	p := &processor{cfg: &cfg, log: cfg.Logger, changelog: ChangelogTopic(cfg.AppID), repartition: RepartitionTopic(cfg.AppID),
		tasks: make(map[int32]*task), revoked: make(map[int32]bool), hw: make(map[int32]int64), next: make(map[int32]int64)}
	return p.run(ctx)
}

// processor runs one instance of a stream application.
type processor struct {
	cfg         *Config
	log         zerolog.Logger
	changelog   string
	repartition string // used when cfg.repartition
	store       *store
	adm         *kadm.Client
	restorer    *kgo.Client // reads changelogs for restores
	sess        *kgo.GroupTransactSession
	cl          *kgo.Client // the session's client, or the at-least-once client

	tasks map[int32]*task // by input partition, or repartition partition
	inTxn bool            // a transaction was begun since the last commit
	fresh int64           // input records read (and repartitioned) since the last commit
	// freshInvalid counts the records of fresh without a group key or
	// time (when repartitioning).
	freshInvalid int64
	ev           Event
	stats        Stats
	hw           map[int32]int64 // input high watermarks, for the lag
	next         map[int32]int64 // input offsets to read next

	mu       sync.Mutex
	revoked  map[int32]bool // partitions taken away since the last look
	writeErr error          // a write of the open transaction failed
}

func (p *processor) run(ctx context.Context) error {
	cfg := p.cfg
	var err error
	if p.store, err = openStore(cfg.StateDir, p.log); err != nil {
		return err
	}
	defer p.store.Close()
	pid, err := processID(cfg.StateDir)
	if err != nil {
		return err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	defer admCl.Close()
	p.adm = kadm.NewClient(admCl)
	if err := p.createTopics(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	if p.restorer, err = kgo.NewClient(append(slices.Clone(base), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...); err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	defer p.restorer.Close()

	opts := append([]kgo.Opt{
		// Large fetches: the client fetches again only once the
		// records of the last fetch are taken, so each round trip
		// should bring many.
		kgo.FetchMaxPartitionBytes(16 << 20), kgo.FetchMaxBytes(64 << 20),
	}, base...)
	opts = append(opts,
		kgo.ConsumerGroup(cfg.AppID),
		kgo.ConsumeTopics(p.consumed()...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.InstanceID(cfg.AppID+"-"+pid),
		kgo.SessionTimeout(10*time.Second),
		kgo.RecordPartitioner(partitioner{changelog: p.changelog, keyed: kgo.StickyKeyPartitioner(nil)}),
		kgo.ProducerLinger(0),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onRevoked),
	)
	if cfg.AtLeastOnce {
		opts = append(opts, kgo.DisableAutoCommit())
		if p.cl, err = kgo.NewClient(opts...); err != nil {
			return fmt.Errorf("streams: %w", err)
		}
	} else {
		opts = append(opts, kgo.TransactionalID(cfg.AppID+"-"+pid), kgo.TransactionTimeout(10*time.Second))
		if p.sess, err = kgo.NewGroupTransactSession(opts...); err != nil {
			return fmt.Errorf("streams: %w", err)
		}
		p.cl = p.sess.Client()
	}
	defer func() {
		if p.sess != nil {
			p.sess.Close()
		} else {
			p.cl.Close()
		}
	}()
	p.log.Info().Str("app", cfg.AppID).Str("in", cfg.Input).Str("out", cfg.Output).Str("window", cfg.Window.String()).
		Bool("exactly_once", !cfg.AtLeastOnce).Str("process", pid).Msg("stream processor started")
	return p.loop(ctx)
}

// consumed lists the topics the group consumes.
func (p *processor) consumed() []string {
	if p.cfg.repartition {
		return []string{p.cfg.Input, p.repartition}
	}
	return []string{p.cfg.Input}
}

// taskTopic is the topic whose partitions are the tasks.
func (p *processor) taskTopic() string {
	if p.cfg.repartition {
		return p.repartition
	}
	return p.cfg.Input
}

// createTopics creates the changelog (compacted, partitioned like the
// input) and the output when missing.
func (p *processor) createTopics(ctx context.Context) error {
	var parts int32
	for {
		td, err := p.adm.ListTopics(ctx, p.cfg.Input)
		if err == nil {
			if t, ok := td[p.cfg.Input]; ok && t.Err == nil && len(t.Partitions) > 0 {
				parts = int32(len(t.Partitions))
				break
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("streams: input topic %s: %w", p.cfg.Input, ctx.Err())
		}
		p.log.Info().Str("topic", p.cfg.Input).Msg("waiting for the input topic")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	compact, day := "compact", "86400000"
	topics := []struct {
		name    string
		configs map[string]*string
	}{{p.changelog, map[string]*string{"cleanup.policy": &compact}}, {p.cfg.Output, nil}}
	if p.cfg.repartition {
		topics = append(topics, struct {
			name    string
			configs map[string]*string
		}{p.repartition, map[string]*string{"retention.ms": &day}})
	}
	for _, tc := range topics {
		rf := p.cfg.ReplicationFactor
		if rf <= 0 {
			rf = -1
		}
		resp, err := p.adm.CreateTopic(ctx, parts, rf, tc.configs, tc.name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("streams: creating topic %s: %w", tc.name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("streams: creating topic %s: %w", tc.name, resp.Err)
		}
	}
	return nil
}

func (p *processor) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range lost[p.taskTopic()] {
		p.revoked[part] = true
	}
}

func (p *processor) poll(ctx context.Context) kgo.Fetches {
	if p.sess != nil {
		return p.sess.PollRecords(ctx, 10000)
	}
	return p.cl.PollRecords(ctx, 10000)
}

func (p *processor) loop(ctx context.Context) error {
	nextCommit := time.Now().Add(p.cfg.CommitInterval)
	for {
		pctx, cancel := context.WithDeadline(ctx, nextCommit)
		fetches := p.poll(pctx)
		cancel()
		// Every record polled is processed before anything is
		// committed: the commit covers the offsets of all of them.
		if err := p.process(ctx, fetches); err != nil {
			p.abandon()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			break
		}
		if time.Now().After(nextCommit) {
			if err := p.commitBounded(ctx); err != nil {
				return err
			}
			nextCommit = time.Now().Add(p.cfg.CommitInterval)
		}
	}
	// A last commit of what was processed.
	if err := p.commitBounded(ctx); err != nil {
		return err
	}
	p.log.Info().Int64("in", p.stats.In).Int64("emitted", p.stats.Emitted).Int64("late", p.stats.Late).Msg("stream processor stopped")
	return nil
}

// process takes the records of fetches into their tasks.
func (p *processor) process(ctx context.Context, fetches kgo.Fetches) error {
	var ferr error
	fetches.EachError(func(topic string, part int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			ferr = err
			return
		}
		p.log.Warn().Err(err).Str("topic", topic).Int32("partition", part).Msg("fetch error")
	})
	if ferr != nil {
		return fmt.Errorf("streams: %w", ferr)
	}
	p.dropRevoked()
	var perr error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if perr != nil || len(fp.Records) == 0 {
			return
		}
		if fp.Topic == p.cfg.Input {
			p.hw[fp.Partition] = fp.HighWatermark
			p.next[fp.Partition] = fp.Records[len(fp.Records)-1].Offset + 1
			p.fresh += int64(len(fp.Records))
		}
		if fp.Topic != p.taskTopic() {
			perr = p.repartitionRecords(ctx, fp.Records)
			return
		}
		t, err := p.task(ctx, fp.Partition)
		if err != nil {
			perr = err
			return
		}
		for _, r := range fp.Records {
			p.ev.reset(r)
			t.process(&p.ev)
		}
	})
	return perr
}

// begin begins a transaction unless one is open.
func (p *processor) begin() error {
	if p.sess == nil || p.inTxn {
		return nil
	}
	if err := p.sess.Begin(); err != nil {
		return fmt.Errorf("streams: beginning a transaction: %w", err)
	}
	p.inTxn = true
	return nil
}

// repartitionRecords writes input records to the repartition topic keyed
// by their group key, in the open transaction; a record without a key or
// time is counted invalid and dropped.
func (p *processor) repartitionRecords(ctx context.Context, rs []*kgo.Record) error {
	if err := p.begin(); err != nil {
		return err
	}
	for _, r := range rs {
		p.ev.reset(r)
		key, ok := p.cfg.Key(&p.ev)
		if !ok {
			p.freshInvalid++
			continue
		}
		if ts, ok := p.cfg.Time(&p.ev); !ok || ts < 0 {
			p.freshInvalid++
			continue
		}
		p.cl.Produce(ctx, &kgo.Record{Topic: p.repartition, Key: []byte(key), Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers}, p.noteErr)
	}
	return nil
}

// noteErr records a failed write of the open transaction.
func (p *processor) noteErr(_ *kgo.Record, err error) {
	if err != nil {
		p.mu.Lock()
		p.writeErr = errors.Join(p.writeErr, err)
		p.mu.Unlock()
	}
}

// abandon gives up the work since the last commit: records were polled
// that could not be processed, so their offsets must not be committed.
func (p *processor) abandon() {
	if p.sess == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.begin(); err == nil {
		if _, err := p.sess.End(ctx, kgo.TryAbort); err != nil {
			p.log.Warn().Err(err).Msg("aborting the transaction")
		}
		p.inTxn = false
	}
}

// dropRevoked forgets the tasks of partitions taken away: their changes
// since the last commit are in a transaction the session aborts.
func (p *processor) dropRevoked() {
	p.mu.Lock()
	revoked := p.revoked
	p.revoked = make(map[int32]bool)
	p.mu.Unlock()
	for part := range revoked {
		if _, ok := p.tasks[part]; ok {
			delete(p.tasks, part)
			delete(p.hw, part)
			delete(p.next, part)
			p.log.Info().Int32("partition", part).Msg("task handed over")
		}
	}
}

// task returns the task of an input partition, restoring its state the
// first time.
func (p *processor) task(ctx context.Context, part int32) (*task, error) {
	if t, ok := p.tasks[part]; ok {
		return t, nil
	}
	start := time.Now()
	t := newTask(p.cfg, part)
	from, ok, err := p.store.checkpoint(part)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := p.store.load(part, t); err != nil {
			return nil, err
		}
	} else {
		if err := p.store.drop(part); err != nil {
			return nil, err
		}
		from = -2 // the changelog's start
	}
	n, next, err := p.replay(ctx, part, from, t)
	if err != nil {
		return nil, err
	}
	p.tasks[part] = t
	p.log.Info().Int32("partition", part).Bool("local_state", ok).Int("changelog_records", n).Int64("changelog_offset", next).
		Dur("took", time.Since(start)).Msg("task restored")
	return t, nil
}

// restoreStall bounds how long a restore waits for the changelog to give
// more records.
const restoreStall = 30 * time.Second

// changelogOffset asks list for the offset of the changelog's partition
// part, retrying for up to restoreStall while the partition has no leader
// or its leader moves.
func (p *processor) changelogOffset(ctx context.Context, part int32, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (int64, error) {
	deadline := time.Now().Add(restoreStall)
	for {
		offs, err := list(ctx, p.changelog)
		if err == nil {
			o, ok := offs.Lookup(p.changelog, part)
			switch {
			case !ok:
				err = fmt.Errorf("no answer for the partition")
			case o.Err == nil:
				return o.Offset, nil
			default:
				err = o.Err
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return 0, fmt.Errorf("streams: changelog %s partition %d offsets: %w", p.changelog, part, err)
		}
		p.log.Debug().Err(err).Int32("partition", part).Msg("changelog offsets not listed yet; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// replay applies the changelog of part from offset from (-2: its start)
// up to its last stable offset to t and to the store.
func (p *processor) replay(ctx context.Context, part int32, from int64, t *task) (int, int64, error) {
	end, err := p.changelogOffset(ctx, part, p.adm.ListCommittedOffsets)
	if err != nil {
		return 0, 0, err
	}
	if from < 0 {
		start, err := p.changelogOffset(ctx, part, p.adm.ListStartOffsets)
		if err != nil {
			return 0, 0, err
		}
		from = start
	}
	if from >= end {
		return 0, from, p.store.write(part, nil, from)
	}
	off := kgo.NewOffset().At(from)
	p.restorer.AddConsumePartitions(map[string]map[int32]kgo.Offset{p.changelog: {part: off}})
	defer p.restorer.RemoveConsumePartitions(map[string][]int32{p.changelog: {part}})
	var ws []write
	n, last := 0, from-1
	progressed := time.Now()
	// Every transaction ends with a marker, returned with the control
	// records, so the last offset below the end is always seen.
	for last < end-1 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := p.restorer.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("streams: restoring partition %d: %w", part, ctx.Err())
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, kgo.ErrClientClosed):
				ferr = err
			default: // a leader moving: tried again, within restoreStall
				p.log.Debug().Err(err).Int32("partition", part).Msg("changelog fetch error")
			}
		})
		if ferr != nil {
			return 0, 0, fmt.Errorf("streams: restoring partition %d: %w", part, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			// Only this partition's records, each once: a fetch
			// buffered for an earlier restore may come late.
			if r.Topic != p.changelog || r.Partition != part || r.Offset <= last {
				return
			}
			last = r.Offset
			progressed = time.Now()
			if r.Attrs.IsControl() {
				return
			}
			if err == nil {
				err = t.apply(r.Key, r.Value)
			}
			ws = append(ws, write{key: r.Key, value: r.Value})
			n++
		})
		if err != nil {
			return 0, 0, fmt.Errorf("streams: restoring partition %d: %w", part, err)
		}
		if time.Since(progressed) > restoreStall {
			return 0, 0, fmt.Errorf("streams: restoring partition %d: the changelog %s gave nothing past offset %d for %v, short of its end %d", part, p.changelog, last, restoreStall, end)
		}
	}
	next := last + 1
	if err := p.store.write(part, ws, next); err != nil {
		return 0, 0, err
	}
	return n, next, nil
}

// commitWait bounds a commit. A commit is not cut short when the
// processor is stopped: a transaction ended halfway leaves the client
// unusable.
const commitWait = 30 * time.Second

func (p *processor) commitBounded(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitWait)
	defer cancel()
	return p.commit(cctx)
}

// commit writes the results and changelog records of every task and
// commits them with the input offsets, in one transaction when exactly
// once.
func (p *processor) commit(ctx context.Context) error {
	parts := make([]int32, 0, len(p.tasks))
	for part := range p.tasks {
		parts = append(parts, part)
	}
	slices.Sort(parts)
	pending := p.fresh > 0 || p.inTxn
	for _, t := range p.tasks {
		pending = pending || t.in > 0
	}
	if !pending {
		return nil
	}
	if err := p.begin(); err != nil {
		return err
	}
	type taskWrites struct {
		part int32
		ws   []write
		next int64
	}
	all := make([]taskWrites, len(parts))
	var mu sync.Mutex // guards all
	for i, part := range parts {
		t := p.tasks[part]
		t.closeDue()
		ws := t.changes()
		all[i] = taskWrites{part: part, ws: ws, next: -1}
		for _, o := range t.out {
			p.cl.Produce(ctx, &kgo.Record{Topic: p.cfg.Output, Key: o.key, Value: o.value}, p.noteErr)
		}
		for _, w := range ws {
			p.cl.Produce(ctx, &kgo.Record{Topic: p.changelog, Partition: part, Key: w.key, Value: w.value}, func(r *kgo.Record, err error) {
				if err != nil {
					p.noteErr(r, err)
					return
				}
				mu.Lock()
				all[i].next = max(all[i].next, r.Offset+1)
				mu.Unlock()
			})
		}
	}
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("streams: flushing: %w", err)
	}
	p.mu.Lock()
	werr := p.writeErr
	p.writeErr = nil
	p.mu.Unlock()
	committed := true
	if p.sess != nil {
		try := kgo.TryCommit
		if werr != nil {
			p.log.Warn().Err(werr).Msg("a write of the transaction failed: aborting it")
			try = kgo.TryAbort
		}
		var err error
		committed, err = p.sess.End(ctx, try)
		p.inTxn = false
		if err != nil {
			return fmt.Errorf("streams: ending a transaction: %w", err)
		}
	} else {
		if werr != nil {
			return fmt.Errorf("streams: writing results: %w", werr)
		}
		if err := p.cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("streams: committing offsets: %w", err)
		}
	}
	var late, invalid, emitted int64
	for _, tw := range all {
		t := p.tasks[tw.part]
		late, invalid, emitted = late+t.late, invalid+t.invalid, emitted+t.emitted
		if !committed {
			t.rollback()
			continue
		}
		t.committed()
		if err := p.store.write(tw.part, tw.ws, tw.next); err != nil {
			return err
		}
	}
	if committed && late > 0 {
		p.log.Info().Int64("late", late).Dur("grace", p.cfg.Grace).
			Msg("late records dropped: every window they fall in had closed (their event time is further behind the stream time than the grace period)")
	}
	if committed {
		p.stats.In += p.fresh
		p.stats.Late += late
		p.stats.Invalid += invalid + p.freshInvalid
		p.stats.Emitted += emitted
		p.stats.Commits++
	} else {
		p.stats.Aborts++
		p.log.Info().Msg("transaction aborted (the group rebalanced): its records are processed again")
		// The session rewound to the committed offsets. Every task is
		// restored afresh from its store (which holds the last commit)
		// and the changelog: one made for records of a partition taken
		// away meanwhile would otherwise linger, and be stale if the
		// partition came back after another processor wrote to it.
		clear(p.tasks)
		clear(p.hw)
		clear(p.next)
	}
	p.fresh, p.freshInvalid = 0, 0
	p.stats.Lag = 0
	for part, hw := range p.hw {
		if next, ok := p.next[part]; ok && hw > next {
			p.stats.Lag += hw - next
		}
	}
	p.stats.Tasks = len(p.tasks)
	if p.cfg.Progress != nil {
		p.cfg.Progress(p.stats)
	}
	return nil
}

// partitioner writes changelog records to the partition they name and
// results by key, as Kafka's default partitioner does.
type partitioner struct {
	changelog string
	keyed     kgo.Partitioner
}

func (pp partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == pp.changelog {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return pp.keyed.ForTopic(topic)
}
