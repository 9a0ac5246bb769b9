package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Workload is one benchmark run's settings. Every setting goes into the
// report.
type Workload struct {
	Brokers []string `json:"brokers"`
	// Topic, when set, is reused (created if missing); the consumers then
	// start at the end offsets taken before producing, and only this run's
	// records count. Empty makes a fresh topic per run, named
	// TopicPrefix-<run ID>.
	Topic       string `json:"topic,omitempty"`
	TopicPrefix string `json:"topic_prefix"`
	Partitions  int32  `json:"partitions"`
	// Replication is the replication factor of a created topic; -1 takes
	// the broker's default.
	Replication int16 `json:"replication"`
	// Rate is the total offered load in records per second, spread evenly
	// over the producers and paced open loop; 0 sends as fast as the
	// producers go.
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration_ns"`
	// Warmup is the first part of Duration, whose records are sent and
	// audited but left out of the summary latencies and throughput.
	Warmup     time.Duration `json:"warmup_ns"`
	RecordSize int           `json:"record_size"`
	SizeDist   string        `json:"size_dist"`
	Keys       string        `json:"keys"`
	KeySpace   int           `json:"key_space"`
	ZipfS      float64       `json:"zipf_s"`
	// Acks is -1 (all), 1 (leader) or 0 (none).
	Acks        int16  `json:"acks"`
	Compression string `json:"compression"`
	// Idempotent turns on the idempotent producer (needs acks=-1).
	Idempotent  bool          `json:"idempotent"`
	Producers   int           `json:"producers"`
	Consumers   int           `json:"consumers"`
	Group       string        `json:"group,omitempty"` // empty: pubg1-bench-<run ID>
	Linger      time.Duration `json:"linger_ns"`       // negative: franz-go's default
	MaxBuffered int           `json:"max_buffered"`    // records in flight per producer
	// MetadataMinAge is the least time between two metadata refreshes of
	// a client (franz-go's MetadataMinAge, 5 s by default): after a
	// leader change, a producer and a consumer wait at least this long to
	// learn the new leader, which would otherwise dominate the failover
	// figures. Negative keeps the client's default.
	MetadataMinAge time.Duration `json:"metadata_min_age_ns"`
	// RequestTimeout is how long a client waits for a response before it
	// gives up on the connection and retries, elsewhere if the metadata
	// says so: franz-go's ProduceRequestTimeout (the time the broker may
	// take) and RequestTimeoutOverhead (added to every request's
	// deadline). A broker frozen by SIGSTOP keeps its connections open, so
	// a client waits this long before it turns to the new leader. 0 keeps
	// franz-go's defaults, 10 s each.
	RequestTimeout time.Duration `json:"request_timeout_ns,omitempty"`
	// ProduceTimeout, when positive, is franz-go's ProduceRequestTimeout
	// instead of RequestTimeout: a produce waits ProduceTimeout plus
	// RequestTimeout, any other request RequestTimeout (plus what the
	// request itself asks the broker to wait), so that a client gives
	// up on a frozen broker's metadata sooner than on its produce.
	ProduceTimeout time.Duration `json:"produce_timeout_ns,omitempty"`
	// DeliveryTimeout bounds how long a record may wait for its
	// acknowledgement, retries included, before it counts as failed.
	DeliveryTimeout time.Duration `json:"delivery_timeout_ns"`
	// Backlog, when positive, first builds this many payload bytes unread
	// (consumers paused) and then measures how fast the consumers drain
	// it while the producers continue.
	Backlog int64 `json:"backlog_bytes"`
	// DrainTimeout bounds the end of the run: flushing the producers,
	// waiting for the fault source to heal the cluster, and the consumers
	// reading to the end offsets.
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	// Label names the system under test in reports ("pubg1", "kafka
	// 3.9"); the wire protocol does not say which software answers.
	Label string `json:"label,omitempty"`
	Seed  int64  `json:"seed"`
}

// DefaultWorkload is a moderate open-loop run: 1,000 records/s of 1 KiB
// for 30 s over 6 partitions with the broker's default replication,
// acks=all and idempotence, one producer and one consumer.
func DefaultWorkload() Workload {
	return Workload{
		Brokers:         []string{"127.0.0.1:9092"},
		TopicPrefix:     "pubg1-bench",
		Partitions:      6,
		Replication:     -1,
		Rate:            1000,
		Duration:        30 * time.Second,
		Warmup:          5 * time.Second,
		RecordSize:      1024,
		SizeDist:        SizeFixed,
		Keys:            KeysNone,
		KeySpace:        1000,
		ZipfS:           1.1,
		Acks:            -1,
		Compression:     "none",
		Idempotent:      true,
		Producers:       1,
		Consumers:       1,
		Linger:          -1,
		MetadataMinAge:  250 * time.Millisecond,
		MaxBuffered:     10_000,
		DeliveryTimeout: 60 * time.Second,
		DrainTimeout:    2 * time.Minute,
		Seed:            1,
	}
}

// Validate checks the settings.
func (w *Workload) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(w.Brokers) > 0, "no brokers")
	check(w.Topic != "" || w.TopicPrefix != "", "neither a topic nor a topic prefix")
	check(w.Partitions > 0, "partitions %d: want at least 1", w.Partitions)
	check(w.Replication == -1 || w.Replication > 0, "replication %d: want -1 or at least 1", w.Replication)
	check(w.Rate >= 0, "rate %v: want 0 (as fast as possible) or more", w.Rate)
	check(w.Duration > 0, "duration %v: want more than 0", w.Duration)
	check(w.Warmup >= 0 && w.Warmup < w.Duration, "warm-up %v: want 0 or more and less than the duration %v", w.Warmup, w.Duration)
	check(w.RecordSize >= MinRecord, "record size %d: want at least %d (the record's identity)", w.RecordSize, MinRecord)
	check(slices.Contains([]string{SizeFixed, SizeUniform, SizeExp}, w.SizeDist), "size distribution %q: want fixed, uniform or exp", w.SizeDist)
	check(slices.Contains([]string{KeysNone, KeysUniform, KeysZipf}, w.Keys), "keys %q: want none, uniform or zipf", w.Keys)
	check(w.Keys == KeysNone || w.KeySpace > 1, "key space %d: want at least 2", w.KeySpace)
	check(w.Keys != KeysZipf || w.ZipfS > 1, "zipf s %v: want more than 1", w.ZipfS)
	check(w.Acks == -1 || w.Acks == 0 || w.Acks == 1, "acks %d: want -1, 0 or 1", w.Acks)
	check(!w.Idempotent || w.Acks == -1, "idempotence needs acks=-1")
	_, err := compressionCodec(w.Compression)
	check(err == nil, "%v", err)
	check(w.Producers > 0, "producers %d: want at least 1", w.Producers)
	check(w.Consumers > 0, "consumers %d: want at least 1", w.Consumers)
	check(w.MaxBuffered > 0, "max buffered %d: want at least 1", w.MaxBuffered)
	check(w.DeliveryTimeout > 0, "delivery timeout %v: want more than 0", w.DeliveryTimeout)
	check(w.RequestTimeout >= 0, "request timeout %v: want 0 or more", w.RequestTimeout)
	check(w.ProduceTimeout >= 0, "produce timeout %v: want 0 or more", w.ProduceTimeout)
	check(w.DrainTimeout > 0, "drain timeout %v: want more than 0", w.DrainTimeout)
	check(w.Backlog >= 0, "backlog %d: want 0 or more", w.Backlog)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: workload: %w", err)
	}
	return nil
}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// RunOptions are the parts of a run that are not workload settings.
type RunOptions struct {
	// Faults, if set, injects faults while the workload runs; its events
	// go into the report's timeline. FaultsFor, if set instead, makes the
	// fault source once the run's topic exists (a fault aimed at "the
	// leader" needs to know of which partition).
	Faults    FaultSource
	FaultsFor func(topic string) FaultSource
	// Log receives the runner's own messages; nil discards them.
	Log *slog.Logger
	// Progress, if set, gets a progress line once a second; TTY rewrites
	// one line instead of printing one per second.
	Progress io.Writer
	TTY      bool
	// Software names the system under test when the caller knows it (a
	// local PubG1 cluster the runner started).
	Software *Software
	// Limits, if set, are the machine's ceilings the report relates the
	// results to.
	Limits *Limits
	// ClientLog, if set, receives the producers' franz-go debug log, to
	// see what a client did during a fault.
	ClientLog io.Writer
}

// ErrAudit (wrapped) is returned by Run when the data audit failed (see
// AuditResult.OK): for instance acknowledged records were lost or an
// offset held two different records; the report is returned too.
var ErrAudit = errors.New("bench: data audit failed")

// Run runs the workload against w.Brokers and returns its report. The
// returned error wraps ErrAudit when the data audit failed; the report is
// complete then.
func Run(ctx context.Context, w Workload, opt RunOptions) (*Report, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var runID [8]byte
	if _, err := rand.Read(runID[:]); err != nil {
		return nil, fmt.Errorf("bench: run ID: %w", err)
	}
	r := &runner{w: w, opt: opt, log: log, run: binary.BigEndian.Uint64(runID[:])}
	r.runName = fmt.Sprintf("%016x", r.run)[:10]
	r.topic = w.Topic
	if r.topic == "" {
		r.topic = w.TopicPrefix + "-" + r.runName
	}
	r.group = w.Group
	if r.group == "" {
		r.group = "pubg1-bench-" + r.runName
	}
	return r.execute(ctx)
}

// runner is one run in progress.
type runner struct {
	w       Workload
	opt     RunOptions
	log     *slog.Logger
	run     uint64
	runName string
	topic   string
	group   string
	stats   *collector
	assign  assignment
	// replicas are the topic's replica sets as the run began.
	replicas map[int32][]int32
	events   []FaultEvent
	evMu     sync.Mutex
}

func (r *runner) execute(ctx context.Context) (*Report, error) {
	w := &r.w
	adminCl, err := kgo.NewClient(kgo.SeedBrokers(w.Brokers...))
	if err != nil {
		return nil, fmt.Errorf("bench: admin client: %w", err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	started := time.Now()
	target := describeTarget(ctx, adm, w, r.opt.Software)
	startOffsets, err := r.prepareTopic(ctx, adm)
	if err != nil {
		return nil, err
	}
	if td, err := adm.ListTopics(ctx, r.topic); err == nil && td[r.topic].Err == nil {
		r.replicas = make(map[int32][]int32)
		for p, pd := range td[r.topic].Partitions {
			r.replicas[p] = pd.Replicas
		}
	}
	if r.opt.FaultsFor != nil {
		r.opt.Faults = r.opt.FaultsFor(r.topic)
	}

	// Consumers first, and producers only once the group has every
	// partition, so that end-to-end latency does not include the join.
	consCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	// A partition the run writes nothing to is drained where it started.
	r.stats = newCollector(w, startOffsets)
	var consWG sync.WaitGroup
	consumers := make([]*kgo.Client, w.Consumers)
	for i := range consumers {
		cl, err := r.newConsumer(i)
		if err != nil {
			stopConsumers()
			consWG.Wait()
			return nil, err
		}
		consumers[i] = cl
		if w.Backlog > 0 {
			cl.PauseFetchTopics(r.topic)
		}
		consWG.Go(func() { r.consume(consCtx, cl, i) })
	}
	defer func() {
		stopConsumers()
		consWG.Wait()
		for _, cl := range consumers {
			cl.Close()
		}
	}()
	joinCtx, cancelJoin := context.WithTimeout(ctx, w.DrainTimeout)
	joined := untilCtx(joinCtx, 20*time.Millisecond, func() bool { return r.assign.count() == int(w.Partitions) })
	cancelJoin()
	if !joined {
		return nil, fmt.Errorf("bench: consumer group %s was not assigned all %d partitions within %v", r.group, w.Partitions, w.DrainTimeout)
	}

	// The measured phase: producers, faults, progress and the backlog
	// monitor, all owned by this function and stopped before it returns.
	start := time.Now()
	r.stats.begin(start)
	prodCtx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	producers := make([]*kgo.Client, w.Producers)
	for i := range producers {
		cl, err := r.newProducer()
		if err != nil {
			for _, p := range producers[:i] {
				p.Close()
			}
			return nil, err
		}
		producers[i] = cl
	}
	filler := newFiller(w.Seed, w.RecordSize*8)
	duration := w.Duration
	var backlogDone chan struct{}
	var backlog *BacklogResult
	if w.Backlog > 0 {
		backlogDone = make(chan struct{})
		backlog = &BacklogResult{TargetBytes: w.Backlog}
	}
	var bgWG sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(ctx)
	if backlog != nil {
		bgWG.Go(func() {
			defer close(backlogDone)
			r.runBacklog(bgCtx, consumers, backlog, start)
		})
	}
	faultsDone := make(chan error, 1)
	faultCtx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	if r.opt.Faults != nil {
		events := make(chan FaultEvent, 64)
		bgWG.Go(func() {
			for ev := range events {
				r.evMu.Lock()
				r.events = append(r.events, ev)
				r.evMu.Unlock()
				r.log.Debug("fault event", "kind", ev.Kind, "broker", ev.Broker, "detail", ev.Detail, "error", ev.Err)
			}
		})
		bgWG.Go(func() {
			defer close(events)
			faultsDone <- r.opt.Faults.Run(faultCtx, start, events)
		})
	} else {
		faultsDone <- nil
	}
	if r.opt.Progress != nil {
		bgWG.Go(func() { r.progress(bgCtx, start) })
	}

	var prodWG sync.WaitGroup
	for i, cl := range producers {
		gen := newRecordGen(w, r.run, uint32(i), filler)
		rate := w.Rate / float64(w.Producers)
		prodWG.Go(func() {
			d := duration
			if backlog != nil {
				// Producers run at least until the backlog is built and
				// drained, and at most until the drain timeout after that.
				r.produceUntil(prodCtx, cl, gen, rate, start, d, backlogDone)
				return
			}
			r.produce(ctx, prodCtx, cl, gen, rate, start, d)
		})
	}
	prodWG.Wait()
	producedFor := time.Since(start)
	r.stats.mark(func(c *collector) { c.lagAtEnd = c.ackedCount - c.consumedCount })

	// Flush what is in flight, then wait for the cluster to be whole.
	flushCtx, cancelFlush := context.WithTimeout(ctx, w.DrainTimeout)
	for _, cl := range producers {
		if err := cl.Flush(flushCtx); err != nil {
			r.log.Warn("producer flush did not finish", "error", err)
			break
		}
	}
	cancelFlush()
	for _, cl := range producers {
		cl.Close() // fails what is still buffered
	}
	var faultErr error
	select {
	case faultErr = <-faultsDone:
	case <-time.After(w.DrainTimeout):
		faultErr = fmt.Errorf("bench: fault source still running %v after the producers stopped", w.DrainTimeout)
	case <-ctx.Done():
		faultErr = ctx.Err()
	}
	stopFaults()
	stopBackground()
	bgWG.Wait()
	if faultErr != nil {
		r.log.Warn("fault injection", "error", faultErr)
	}
	for _, cl := range consumers {
		cl.ResumeFetchTopics(r.topic)
	}

	// Drain: the consumers read every partition to the end offsets taken
	// now that nothing is being produced.
	drained, drainErr := r.drain(ctx, adm)
	stopConsumers()
	consWG.Wait()
	if r.opt.Progress != nil && r.opt.TTY {
		fmt.Fprintln(r.opt.Progress)
	}

	rep := r.stats.report(r, target, started, start, producedFor, startOffsets)
	rep.Backlog = backlog
	rep.Drained = drained
	if drainErr != nil {
		rep.Notes = append(rep.Notes, drainErr.Error())
	}
	if faultErr != nil {
		rep.Notes = append(rep.Notes, "fault injection: "+faultErr.Error())
	}
	if r.opt.Limits != nil {
		rep.Limits = r.opt.Limits
		rep.OfLimits = percentOfLimits(rep, r.opt.Limits)
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("bench: run interrupted: %w", ctx.Err())
	}
	if !drained {
		return rep, fmt.Errorf("%w: consumers did not reach the end offsets (%v), so the audit cannot tell lost from unread", ErrAudit, drainErr)
	}
	if !rep.Audit.OK() {
		return rep, fmt.Errorf("%w: %s", ErrAudit, rep.Audit.Problem())
	}
	return rep, nil
}

// prepareTopic creates the run's topic (or checks the reused one) and
// returns the end offsets before producing: the consumers start there.
func (r *runner) prepareTopic(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	w := &r.w
	resp, err := adm.CreateTopic(ctx, w.Partitions, w.Replication, nil, r.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !(w.Topic != "" && errors.Is(err, kerr.TopicAlreadyExists)) {
		return nil, fmt.Errorf("bench: creating topic %s: %w", r.topic, err)
	}
	// The topic is usable once every partition has a leader that answers
	// ListOffsets.
	var ends kadm.ListedOffsets
	ready := untilCtx(ctx, 50*time.Millisecond, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ends, err = adm.ListEndOffsets(cctx, r.topic)
		if err == nil {
			err = ends.Error()
		}
		return err == nil && len(ends[r.topic]) > 0
	})
	if !ready {
		return nil, fmt.Errorf("bench: topic %s not ready: %w", r.topic, errors.Join(err, ctx.Err()))
	}
	if n := int32(len(ends[r.topic])); n != w.Partitions {
		r.log.Info("topic has another partition count than asked", "topic", r.topic, "partitions", n)
		w.Partitions = n
	}
	start := make(map[int32]int64)
	for p, o := range ends[r.topic] {
		start[p] = o.Offset
	}
	if w.Topic != "" {
		// Start the group where the topic ends now, so that records of
		// earlier runs are not read.
		resp, err := adm.CommitOffsets(ctx, r.group, ends.Offsets())
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("bench: setting group %s to the end of %s: %w", r.group, r.topic, err)
		}
	}
	return start, nil
}

func (r *runner) newProducer() (*kgo.Client, error) {
	w := &r.w
	codec, _ := compressionCodec(w.Compression)
	opts := []kgo.Opt{
		kgo.SeedBrokers(w.Brokers...),
		kgo.DefaultProduceTopic(r.topic),
		kgo.MaxBufferedRecords(w.MaxBuffered),
		kgo.ProducerBatchCompression(codec),
		kgo.RecordDeliveryTimeout(w.DeliveryTimeout),
	}
	if w.Linger >= 0 {
		opts = append(opts, kgo.ProducerLinger(w.Linger))
	}
	if w.MetadataMinAge >= 0 {
		opts = append(opts, kgo.MetadataMinAge(w.MetadataMinAge))
	}
	if w.RequestTimeout > 0 {
		opts = append(opts, kgo.RequestTimeoutOverhead(w.RequestTimeout))
	}
	if pt := cmp.Or(w.ProduceTimeout, w.RequestTimeout); pt > 0 {
		opts = append(opts, kgo.ProduceRequestTimeout(pt))
	}
	if r.opt.ClientLog != nil {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(r.opt.ClientLog, kgo.LogLevelDebug, func() string {
			return time.Now().UTC().Format("15:04:05.000 ")
		})))
	}
	switch w.Acks {
	case -1:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	}
	if !w.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: producer: %w", err)
	}
	return cl, nil
}

// newConsumer makes the i-th consumer. Its rebalance callbacks wait while
// it handles a poll (until AllowRebalance), so that each poll's records
// are recorded in the sessions they were fetched in.
func (r *runner) newConsumer(i int) (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(r.w.Brokers...),
		kgo.ConsumerGroup(r.group),
		kgo.ConsumeTopics(r.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.stats.rebalanced(i, m[r.topic])
			r.assign.add(m[r.topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.stats.rebalanced(i, m[r.topic])
			r.assign.remove(m[r.topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.stats.rebalanced(i, m[r.topic])
			r.assign.remove(m[r.topic])
		}),
	}
	if r.w.MetadataMinAge >= 0 {
		opts = append(opts, kgo.MetadataMinAge(r.w.MetadataMinAge))
	}
	if r.w.RequestTimeout > 0 {
		opts = append(opts, kgo.RequestTimeoutOverhead(r.w.RequestTimeout))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: consumer: %w", err)
	}
	return cl, nil
}

// produce sends gen's records on the open-loop schedule for d, or until
// pace ends. Records are handed over with ctx, which only the run's end
// cancels: stopping the schedule must not fail what is already buffered.
func (r *runner) produce(ctx, pace context.Context, cl *kgo.Client, gen *recordGen, rate float64, start time.Time, d time.Duration) {
	promise := func(rec *kgo.Record, err error) { r.stats.acked(rec, err, time.Now()) }
	Pace(pace, rate, start, d, func(seq int64, due time.Time) {
		rec := &kgo.Record{Key: gen.key(), Value: gen.value(seq, due), Timestamp: due}
		r.stats.sent(due, len(rec.Value))
		cl.Produce(ctx, rec, promise)
	})
}

// produceUntil produces for at least d and until done is closed (the
// backlog drained), bounded by d plus the drain timeout.
func (r *runner) produceUntil(ctx context.Context, cl *kgo.Client, gen *recordGen, rate float64, start time.Time, d time.Duration, done <-chan struct{}) {
	var wg sync.WaitGroup
	defer wg.Wait()
	pace, stop := context.WithCancel(ctx)
	defer stop() // before the Wait
	wg.Go(func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-pace.Done():
			return
		}
		select {
		case <-done:
		case <-pace.Done():
		}
		stop()
	})
	r.produce(ctx, pace, cl, gen, rate, start, d+r.w.DrainTimeout)
}

// consume reads records with the i-th consumer until ctx ends. Every poll
// blocks rebalancing until AllowRebalance, even one that returns nothing.
func (r *runner) consume(ctx context.Context, cl *kgo.Client, i int) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return
		}
		now := time.Now()
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.stats.consumeError(err, now)
			}
		})
		r.stats.consumed(fs, i, r.run, now)
		cl.AllowRebalance()
	}
}

// drain waits until the consumers have read every partition up to its
// end offset, listed now.
func (r *runner) drain(ctx context.Context, adm *kadm.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.w.DrainTimeout)
	defer cancel()
	var ends kadm.ListedOffsets
	var err error
	if !untilCtx(ctx, 100*time.Millisecond, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ends, err = adm.ListEndOffsets(cctx, r.topic)
		if err == nil {
			err = ends.Error()
		}
		return err == nil
	}) {
		return false, fmt.Errorf("bench: listing end offsets of %s: %w", r.topic, errors.Join(err, ctx.Err()))
	}
	want := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	ok := untilCtx(ctx, 50*time.Millisecond, func() bool { return r.stats.reached(want) })
	if !ok {
		return false, fmt.Errorf("bench: consumers at %v, end offsets %v after %v", r.stats.positionsCopy(), want, r.w.DrainTimeout)
	}
	return true, nil
}

// runBacklog builds the backlog with the consumers paused, resumes them,
// and measures how long they take to catch up.
func (r *runner) runBacklog(ctx context.Context, consumers []*kgo.Client, res *BacklogResult, start time.Time) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var target int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := r.stats.snapshot()
		if target == 0 && c.ackedBytes >= res.TargetBytes {
			res.BuiltAfter = time.Since(start)
			res.Records = c.ackedCount - c.consumedCount
			res.Bytes = c.ackedBytes
			target = c.ackedCount
			r.log.Info("backlog built, consumers resumed", "bytes", c.ackedBytes, "records", res.Records)
			for _, cl := range consumers {
				cl.ResumeFetchTopics(r.topic)
			}
			continue
		}
		if target > 0 && c.consumedCount >= target {
			res.DrainedAfter = time.Since(start)
			d := (res.DrainedAfter - res.BuiltAfter).Seconds()
			res.DrainRecordsPerSec = float64(res.Records) / d
			res.DrainMBPerSec = float64(res.Bytes) / 1e6 / d
			res.Complete = true
			return
		}
	}
}

// assignment is the union of the partitions the group's consumers own.
type assignment struct {
	mu     sync.Mutex
	owners map[int32]int
}

func (a *assignment) add(ps []int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owners == nil {
		a.owners = make(map[int32]int)
	}
	for _, p := range ps {
		a.owners[p]++
	}
}

func (a *assignment) remove(ps []int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range ps {
		if a.owners[p]--; a.owners[p] <= 0 {
			delete(a.owners, p)
		}
	}
}

func (a *assignment) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(slices.Collect(maps.Keys(a.owners)))
}

// untilCtx polls cond every interval until it holds (true) or ctx ends
// (false).
func untilCtx(ctx context.Context, interval time.Duration, cond func() bool) bool {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}
