package compattests

// End-to-end tests of `pubg1 stream`, the exactly-once windowed
// aggregation processor: it runs as a separate process against real
// brokers, over generated input with out-of-order and late records, and
// what it writes, read at read_committed, must equal what the reference in
// streams_expected_test.go computes from the same input: every window once,
// none missing, none extra, the same aggregates, also after the processor
// is SIGKILLed and restarted (with or without its local state), after its
// partitions move to another instance, and after a broker dies under it.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// streamEpoch is the event time of the first generated record: no
	// window's boundary.
	streamEpoch = 1_700_000_003_217
	// streamGrace is the grace period of every test's processor, in
	// milliseconds.
	streamGrace = 5000
	// streamStopWait bounds a processor's clean exit after SIGTERM.
	streamStopWait = 30 * time.Second
	// streamQuiet is how long no new result must come before the output
	// read so far counts as all there is.
	streamQuiet = 2 * time.Second
	// streamPoll spaces the checks of a wait for results.
	streamPoll = 50 * time.Millisecond
	// streamMaxProblems bounds the differences a failed comparison lists.
	streamMaxProblems = 30
)

// streamAggs are all the aggregates, over the generated fields.
var streamAggs = []string{"count", "sum:price", "min:price", "max:price", "avg:price", "count-distinct:item"}

// inputSpec shapes a generated input.
type inputSpec struct {
	seed       uint64
	records    int   // before the flush records
	keys       int   // group keys u00, u01, ...; key k is in partition k % partitions
	partitions int32 // of the input topic
	step       int64 // mean advance of the event clock per record, ms
	lag        int64 // an out-of-order record is up to this far behind the clock, ms
	flushLead  int64 // the flush records are this far after the latest event, ms
	flushKeys  int   // flush keys per partition (at least one)
	fields     bool  // key and time only in the value's user and ts; the record key and timestamp mislead
	noPriceKey bool  // the last key's records never have a price
	badPrices  bool  // a few records lack the price or carry it as a string, a few lack the item
}

// genStreamInput generates JSON records {"user":U,"ts":T,"price":P,
// "item":I} in production order, each key always in one partition. The
// event clock advances a random step per record; 12% of the records lag
// it by up to spec.lag (so some are beyond the grace period and late), 3%
// repeat their key's previous time, 3% lie on a 2 s boundary, and keys
// fall silent for 3-20 s now and then (so sessions end). The input ends
// with flush records, s.flushCount() of them: in every partition P, one
// record of each key flush-P-J, far enough in the future to close every
// other window.
func genStreamInput(s inputSpec) []streamRecord {
	rng := rand.New(rand.NewPCG(s.seed, 0x57ea))
	clock := int64(streamEpoch)
	idleUntil := make([]int64, s.keys)
	prev := make([]int64, s.keys)
	maxT := clock
	recs := make([]streamRecord, 0, s.records+int(s.partitions))
	active := make([]int, 0, s.keys)
	for range s.records {
		clock += rng.Int64N(2*s.step + 1)
		k := -1
		for k < 0 {
			active = active[:0]
			wake := int64(math.MaxInt64)
			for key, until := range idleUntil {
				if until <= clock {
					active = append(active, key)
				}
				wake = min(wake, until)
			}
			if len(active) == 0 {
				clock = wake
				continue
			}
			k = active[rng.IntN(len(active))]
		}
		if rng.IntN(50) == 0 {
			idleUntil[k] = clock + 3000 + rng.Int64N(17000)
		}
		t := clock
		switch r := rng.IntN(100); {
		case r < 12:
			t -= 1 + rng.Int64N(s.lag)
		case r < 15 && prev[k] != 0:
			t = prev[k]
		case r < 18:
			t = floorTo(t, 2000)
		}
		prev[k] = t
		maxT = max(maxT, t)

		user := fmt.Sprintf("u%02d", k)
		v := map[string]any{"user": user, "ts": t}
		price := float64(rng.IntN(20000)) / 100
		switch r := rng.IntN(100); {
		case s.noPriceKey && k == s.keys-1:
		case s.badPrices && r < 3:
		case s.badPrices && r < 6:
			v["price"] = strconv.FormatFloat(price, 'f', 2, 64)
		default:
			v["price"] = price
		}
		if !s.badPrices || rng.IntN(25) != 0 {
			v["item"] = fmt.Sprintf("i%d", rng.IntN(8))
		}
		r := streamRecord{Partition: int32(k) % s.partitions, Key: []byte(user), Value: mustJSON(v), Timestamp: t}
		if s.fields {
			r.Key = fmt.Appendf(nil, "u%02d", (k+1)%s.keys)
			r.Timestamp = t - 3_600_000 + rng.Int64N(7_200_001)
		}
		recs = append(recs, r)
	}
	for p := range s.partitions {
		for j := range max(s.flushKeys, 1) {
			user := fmt.Sprintf("flush-%d-%d", p, j)
			t := maxT + s.flushLead
			r := streamRecord{Partition: p, Key: []byte(user), Timestamp: t,
				Value: mustJSON(map[string]any{"user": user, "ts": t, "price": 1, "item": "i0"})}
			if s.fields {
				r.Timestamp = streamEpoch
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// flushCount is the number of flush records that end the input.
func (s inputSpec) flushCount() int { return int(s.partitions) * max(s.flushKeys, 1) }

// eventSpan is the span of the records' event times, in milliseconds.
func eventSpan(recs []streamRecord, q streamQuery) int64 {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, r := range recs {
		if e, ok := eventOf(r, q); ok {
			lo, hi = min(lo, e.t), max(hi, e.t)
		}
	}
	return hi - lo
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// produceStreamInput produces recs in order, each to its partition, and
// checks that every partition's records got increasing offsets in that
// order: the order the reference processes them in.
func produceStreamInput(ctx context.Context, t testing.TB, cl *kgo.Client, topic string, recs []streamRecord) {
	t.Helper()
	const chunk = 20000
	last := make(map[int32]int64)
	for from := 0; from < len(recs); from += chunk {
		part := recs[from:min(from+chunk, len(recs))]
		krs := make([]*kgo.Record, len(part))
		for i, r := range part {
			krs[i] = &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
		}
		if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
			t.Fatalf("producing the input to %s: %v", topic, err)
		}
		for _, kr := range krs {
			if o, seen := last[kr.Partition]; seen && kr.Offset <= o {
				t.Fatalf("%s partition %d: a record produced after offset %d got offset %d", topic, kr.Partition, o, kr.Offset)
			}
			last[kr.Partition] = kr.Offset
		}
	}
}

// streamArgs is the command line of a processor.
func streamArgs(bootstrap, in, out, app, stateDir, emit string, q streamQuery) []string {
	args := []string{"--bootstrap", bootstrap, "--in", in, "--out", out, "--app", app}
	args = append(args, q.flags()...)
	return append(args, "--emit", emit, "--state-dir", stateDir, "--commit-interval", "100ms", "--progress", "0")
}

// streamProc is a `pubg1 stream` process that a test starts, kills and
// restarts with the same command line; its output over every run is logged
// if the test fails, and it is killed when the test ends.
type streamProc struct {
	t    testing.TB
	name string
	args []string
	dir  string // working directory
	out  *syncBuffer
	runs int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // its exit error
}

func startStream(t testing.TB, name string, args ...string) *streamProc {
	t.Helper()
	p := &streamProc{t: t, name: name, args: append([]string{"stream"}, args...), dir: t.TempDir(), out: &syncBuffer{}}
	t.Cleanup(func() {
		if running, _ := p.state(); running {
			p.kill()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, tail(p.out.String(), logTail))
		}
	})
	p.start()
	return p
}

// start runs the processor (again).
func (p *streamProc) start() {
	p.t.Helper()
	if running, _ := p.state(); running {
		p.t.Fatalf("%s is already running", p.name)
	}
	p.runs++
	fmt.Fprintf(p.out, "=== run %d: pubg1 %s\n", p.runs, strings.Join(p.args, " "))
	cmd := exec.Command(brokerBin, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// No processor outlives the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

// state reports whether the current run goes on and, once it has exited,
// its exit error.
func (p *streamProc) state() (running bool, exitErr error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return false, p.err
	default:
		return true, nil
	}
}

// kill ends the run with SIGKILL, as a crash would, and waits for it.
func (p *streamProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// stop sends SIGTERM and checks that the processor exits with status 0
// within streamStopWait; a processor still running then gets SIGQUIT, so
// that its goroutines are in the output, and SIGKILL.
func (p *streamProc) stop() {
	p.t.Helper()
	if running, err := p.state(); !running {
		p.t.Errorf("%s exited before SIGTERM: %v", p.name, err)
		return
	}
	// A signal that comes before the processor handles signals would
	// just end it: wait until this run says it started.
	deadline := time.Now().Add(streamStopWait)
	for strings.Count(p.out.String(), "stream processor started") < p.runs && time.Now().Before(deadline) {
		if running, _ := p.state(); !running {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(streamStopWait):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		p.t.Errorf("%s still running %v after SIGTERM", p.name, streamStopWait)
		return
	}
	if _, err := p.state(); err != nil {
		p.t.Errorf("%s exited with %v after SIGTERM, want status 0", p.name, err)
	}
}

// resultReader reads an output topic at read_committed from the start, in
// the background, for the whole test.
type resultReader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	recs    []outputRecord
	lastAt  time.Time // when the last records came
	lastErr error     // the last fetch error
}

func startResultReader(ctx context.Context, t testing.TB, seeds []string, topic string) *resultReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("creating franz-go consumer: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &resultReader{cl: cl, cancel: cancel, done: make(chan struct{}), lastAt: time.Now()}
	go r.run(ctx)
	t.Cleanup(func() {
		r.cancel()
		<-r.done
		r.cl.Close()
	})
	return r
}

func (r *resultReader) run(ctx context.Context) {
	defer close(r.done)
	for ctx.Err() == nil {
		fs := r.cl.PollFetches(ctx)
		var recs []outputRecord
		fs.EachRecord(func(rec *kgo.Record) {
			recs = append(recs, outputRecord{Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value})
		})
		r.mu.Lock()
		fs.EachError(func(_ string, _ int32, err error) {
			if ctx.Err() == nil {
				r.lastErr = err
			}
		})
		if len(recs) > 0 {
			r.recs = append(r.recs, recs...)
			r.lastAt = time.Now()
		}
		r.mu.Unlock()
	}
}

func (r *resultReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

func (r *resultReader) snapshot() []outputRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// last is when the last records came, and the last fetch error.
func (r *resultReader) last() (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastAt, r.lastErr
}

// atLeast is a wait's condition: n results read.
func atLeast(n int) func(*resultReader) bool {
	return func(r *resultReader) bool { return r.count() >= n }
}

// streamWatch is what a test's waits watch: the processors that must keep
// running, their results, and their consumer group's progress on the input.
type streamWatch struct {
	t      *testing.T
	reader *resultReader
	adm    *kadm.Client
	app    string // the consumer group
	input  string
	procs  []*streamProc
}

// waitFor waits until done approves the results read; a processor exiting
// first, or ctx ending, fails the test.
func (w *streamWatch) waitFor(ctx context.Context, what string, done func(*resultReader) bool) {
	w.t.Helper()
	w.await(ctx, what, done, false)
}

// waitComplete is waitFor that also returns once the group has committed
// the end of every input partition and no result has come for
// streamQuiet: the output is then as complete as it will get, and the
// comparison that follows names what is missing.
func (w *streamWatch) waitComplete(ctx context.Context, what string, done func(*resultReader) bool) {
	w.t.Helper()
	w.await(ctx, what, done, true)
}

func (w *streamWatch) await(ctx context.Context, what string, done func(*resultReader) bool, orIdle bool) {
	w.t.Helper()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	var nextIdleCheck time.Time
	for {
		if done(w.reader) {
			return
		}
		for _, p := range w.procs {
			if running, err := p.state(); !running {
				w.t.Fatalf("%s exited (%v) while waiting for %s; %d results read", p.name, err, what, w.reader.count())
			}
		}
		lastAt, lastErr := w.reader.last()
		if orIdle && time.Since(lastAt) >= streamQuiet && time.Now().After(nextIdleCheck) {
			nextIdleCheck = time.Now().Add(time.Second)
			if w.inputCommitted(ctx) {
				w.t.Logf("the whole input is committed and no result came for %v, but no %s: %d results read", streamQuiet, what, w.reader.count())
				return
			}
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("no %s before the test's deadline: %d results read (last fetch error: %v)", what, w.reader.count(), lastErr)
		case <-tick.C:
		}
	}
}

// waitInputCommitted waits until the group has committed the end offset of
// every input partition.
func (w *streamWatch) waitInputCommitted(ctx context.Context) {
	w.t.Helper()
	var next time.Time
	w.waitFor(ctx, "the group's commit of the whole input", func(*resultReader) bool {
		if time.Now().Before(next) {
			return false
		}
		next = time.Now().Add(500 * time.Millisecond)
		return w.inputCommitted(ctx)
	})
}

// inputCommitted reports whether the group has committed the end offset of
// every input partition.
func (w *streamWatch) inputCommitted(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := w.adm.ListEndOffsets(ctx, w.input)
	if err != nil || ends.Error() != nil {
		return false
	}
	committed, err := w.adm.FetchOffsets(ctx, w.app)
	if err != nil {
		return false
	}
	all := true
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(w.input, o.Partition)
		if !ok || c.Err != nil || c.At != o.Offset {
			all = false
		}
	})
	return all
}

// finish stops the processors with SIGTERM and returns every result read
// once none has come for streamQuiet.
func (w *streamWatch) finish(ctx context.Context) []outputRecord {
	w.t.Helper()
	for _, p := range w.procs {
		p.stop()
	}
	stopped := time.Now()
	for {
		lastAt, _ := w.reader.last()
		if lastAt.Before(stopped) {
			lastAt = stopped
		}
		if time.Since(lastAt) >= streamQuiet {
			return w.reader.snapshot()
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("results still coming at the test's deadline: %d read", w.reader.count())
		case <-time.After(streamPoll):
		}
	}
}

// checkStreamResults compares the results read with the expected ones.
func checkStreamResults(t *testing.T, want map[windowID]map[string]*float64, got []outputRecord, names []string, lastOnly bool) {
	t.Helper()
	problems := diffResults(want, got, names, lastOnly)
	if len(problems) == 0 {
		t.Logf("%d results read, matching the %d expected windows", len(got), len(want))
		return
	}
	more := ""
	if len(problems) > streamMaxProblems {
		more = fmt.Sprintf(" (the first %d)", streamMaxProblems)
		problems = problems[:streamMaxProblems]
	}
	t.Errorf("%d results read for %d expected windows; differences%s:\n%s", len(got), len(want), more, strings.Join(problems, "\n"))
}

// expectResults runs the reference and logs what it expects.
func expectResults(t *testing.T, input []streamRecord, q streamQuery, onlyClosed bool) (*expectation, map[windowID]map[string]*float64) {
	t.Helper()
	x, err := expectedWindows(input, q)
	if err != nil {
		t.Fatalf("computing the expected results: %v", err)
	}
	if x.invalid != 0 {
		t.Fatalf("the generated input has %d records without a key or time", x.invalid)
	}
	want := x.results(q, onlyClosed)
	t.Logf("%s over %d records: %d windows expected (%d left open by the input's end), %d late records", q.window.flag(), len(input), len(want), x.open, x.late)
	return x, want
}

// TestStreamWindowsAndAggregates runs a processor for each kind of window,
// with every aggregate and a grace period, over an input of 3,000 records
// of 20 keys in 3 partitions with out-of-order and late records, and
// compares its results with the reference's: with a result per window as
// it closes, or with updates whose last one per window counts.
//
// The subtest fields takes the group key and event time from JSON fields
// (the record keys and timestamps mislead). Its grace period exceeds the
// input's whole span of event times and its flush records come only once
// the group has committed the rest of the input, so that its results do
// not depend on the order in which records of different input partitions
// meet (a processor may bring a field's records together through a
// repartition topic); lateness is the other subtests' business.
func TestStreamWindowsAndAggregates(t *testing.T) {
	b := startGroupBroker(t)
	ctx := testContext(t, 5*time.Minute)
	adm := newAdmin(t, b)
	producer := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	spec := inputSpec{seed: 20251207, records: 3000, keys: 20, partitions: 3, step: 100,
		lag: 2 * streamGrace, flushLead: 10*10_000 + 10*streamGrace, noPriceKey: true, badPrices: true}
	byKey := genStreamInput(spec)
	fieldSpec := spec
	fieldSpec.seed, fieldSpec.fields, fieldSpec.flushLead, fieldSpec.flushKeys = spec.seed+1, true, 3_600_000, 16
	byField := genStreamInput(fieldSpec)
	fieldFlush := len(byField) - fieldSpec.flushCount()
	const in, inFields = "stream-in", "stream-in-fields"
	createTopic(ctx, t, adm, in, spec.partitions, nil)
	produceStreamInput(ctx, t, producer, in, byKey)
	createTopic(ctx, t, adm, inFields, spec.partitions, nil)
	produceStreamInput(ctx, t, producer, inFields, byField[:fieldFlush])

	query := func(w windowSpec, key, eventTime string) streamQuery {
		return streamQuery{window: w, grace: streamGrace, aggs: streamAggs, key: key, time: eventTime}
	}
	fields := query(tumblingWindow(10*time.Second), "field:user", "field:ts")
	fields.grace = 600_000
	if span := eventSpan(byField[:fieldFlush], fields); span >= fields.grace {
		t.Fatalf("the input's event times span %d ms, not less than the grace period %d ms", span, fields.grace)
	}
	for _, tc := range []struct {
		name, in, emit string
		input          []streamRecord
		q              streamQuery
		flushFrom      int // the input from here on is produced once the group committed the rest (0: all is)
	}{
		{"tumbling", in, "close", byKey, query(tumblingWindow(10*time.Second), "key", "timestamp"), 0},
		{"hopping", in, "close", byKey, query(hoppingWindow(10*time.Second, 4*time.Second), "key", "timestamp"), 0},
		{"sliding", in, "close", byKey, query(slidingWindow(5*time.Second), "key", "timestamp"), 0},
		{"session", in, "close", byKey, query(sessionWindow(3*time.Second), "key", "timestamp"), 0},
		{"fields", inFields, "close", byField, fields, fieldFlush},
		{"update", in, "update", byKey, query(tumblingWindow(10*time.Second), "key", "timestamp"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			update := tc.emit == "update"
			x, want := expectResults(t, tc.input, tc.q, !update)
			if tc.flushFrom == 0 && x.late == 0 {
				t.Fatal("the input has no late record, so it would not test the grace period")
			}
			out, app := "stream-out-"+tc.name, "stream-"+tc.name
			// An output with other partitions than the input's three.
			createTopic(ctx, t, adm, out, 5, nil)
			w := &streamWatch{t: t, reader: startResultReader(ctx, t, []string{b.Addr()}, out), adm: adm, app: app, input: tc.in}
			w.procs = []*streamProc{startStream(t, "processor", streamArgs(b.Addr(), tc.in, out, app, t.TempDir(), tc.emit, tc.q)...)}
			if tc.flushFrom > 0 {
				w.waitInputCommitted(ctx)
				produceStreamInput(ctx, t, producer, tc.in, tc.input[tc.flushFrom:])
			}
			names := tc.q.aggNames()
			done, what := atLeast(len(want)), fmt.Sprintf("%d results", len(want))
			if update {
				// The last result of every window is its final one.
				checked := -1
				done = func(r *resultReader) bool {
					if n := r.count(); n != checked {
						checked = n
						return len(diffResults(want, r.snapshot(), names, true)) == 0
					}
					return false
				}
				what = fmt.Sprintf("final results of %d windows", len(want))
			}
			w.waitComplete(ctx, what, done)
			checkStreamResults(t, want, w.finish(ctx), names, update)
		})
	}
}

// TestStreamExactlyOnceAfterKills SIGKILLs processors mid-stream and checks
// that the committed output is still exactly what an uninterrupted run
// writes: no window missing, none twice, none different.
//
//   - restarts: one processor over 200,000 records, killed at random points
//     and restarted with the same application ID and state directory;
//     once the state directory is deleted before the restart (the state
//     comes back from the changelog), and that run is killed again within
//     1.5 s of its start.
//   - rebalance: two processors of one application share the input; one
//     is killed for good while records keep coming, and the other takes
//     over its partitions.
func TestStreamExactlyOnceAfterKills(t *testing.T) {
	b := startGroupBroker(t, "--transaction-abort-check-interval", "1s")
	adm := newAdmin(t, b)
	producer := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	q := streamQuery{window: tumblingWindow(10 * time.Second), grace: streamGrace, aggs: []string{"count", "sum:price"}, key: "key", time: "timestamp"}
	names := q.aggNames()
	spec := inputSpec{keys: 40, partitions: 3, step: 20, lag: 2 * streamGrace, flushLead: 10*10_000 + 10*streamGrace}

	t.Run("restarts", func(t *testing.T) {
		ctx := testContext(t, 4*time.Minute)
		const in, out, app = "eos-in", "eos-out", "eos"
		spec := spec
		spec.seed, spec.records = 7, 200_000
		input := genStreamInput(spec)
		_, want := expectResults(t, input, q, true)
		createTopic(ctx, t, adm, in, spec.partitions, nil)
		createTopic(ctx, t, adm, out, 3, nil)
		// The input comes in four parts; the processor is killed while it
		// works on each of the first three.
		part := len(input) / 4
		produceStreamInput(ctx, t, producer, in, input[:part])

		stateDir := filepath.Join(t.TempDir(), "state")
		w := &streamWatch{t: t, reader: startResultReader(ctx, t, []string{b.Addr()}, out), adm: adm, app: app, input: in}
		p := startStream(t, "processor", streamArgs(b.Addr(), in, out, app, stateDir, "close", q)...)
		w.procs = []*streamProc{p}
		n := len(want)
		kill := func(when string) {
			t.Helper()
			if running, err := p.state(); !running {
				t.Fatalf("processor exited on its own (%v) before its kill %s", err, when)
			}
			got := w.reader.count()
			p.kill()
			t.Logf("SIGKILLed the processor %s, with %d of %d results out", when, got, n)
		}
		w.waitFor(ctx, "the first results", atLeast(1))
		for i := range 3 {
			// At a random point of its work on the part just produced:
			// restoring, processing or committing.
			wait := time.Duration(rand.IntN(1500)) * time.Millisecond
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			kill(fmt.Sprintf("%v into part %d of the input", wait, i+1))
			produceStreamInput(ctx, t, producer, in, input[(i+1)*part:min((i+2)*part, len(input))])
			if i == 2 {
				produceStreamInput(ctx, t, producer, in, input[4*part:])
			}
			if i == 1 {
				if err := os.RemoveAll(stateDir); err != nil {
					t.Fatal(err)
				}
				t.Log("deleted the state directory")
				p.start()
				wait := time.Duration(100+rand.IntN(1400)) * time.Millisecond
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
				kill(fmt.Sprintf("%v after its restart without state", wait))
			}
			p.start()
		}
		w.waitComplete(ctx, fmt.Sprintf("%d results", n), atLeast(n))
		checkStreamResults(t, want, w.finish(ctx), names, false)
	})

	t.Run("rebalance", func(t *testing.T) {
		ctx := testContext(t, 4*time.Minute)
		const in, out, app = "eos-rebalance-in", "eos-rebalance-out", "eos-rebalance"
		spec := spec
		spec.seed, spec.records = 8, 100_000
		input := genStreamInput(spec)
		_, want := expectResults(t, input, q, true)
		createTopic(ctx, t, adm, in, spec.partitions, nil)
		createTopic(ctx, t, adm, out, 3, nil)
		half := len(input) / 2
		produceStreamInput(ctx, t, producer, in, input[:half])

		w := &streamWatch{t: t, reader: startResultReader(ctx, t, []string{b.Addr()}, out), adm: adm, app: app, input: in}
		dir := t.TempDir()
		a := startStream(t, "processor A", streamArgs(b.Addr(), in, out, app, filepath.Join(dir, "a"), "close", q)...)
		victim := startStream(t, "processor B", streamArgs(b.Addr(), in, out, app, filepath.Join(dir, "b"), "close", q)...)
		w.procs = []*streamProc{a, victim}
		waitGroupState(ctx, t, adm, app, "two members sharing the input", func(d kadm.DescribedGroup) bool {
			if d.State != "Stable" || len(d.Members) != 2 {
				return false
			}
			for _, m := range d.Members {
				if c, ok := m.Assigned.AsConsumer(); ok {
					owned := 0
					for _, at := range c.Topics {
						if at.Topic == in {
							owned += len(at.Partitions)
						}
					}
					if owned == 0 {
						return false
					}
				}
			}
			return true
		})
		n := len(want)
		w.waitFor(ctx, fmt.Sprintf("%d results", n/10), atLeast(n/10))
		got := w.reader.count()
		victim.kill()
		w.procs = []*streamProc{a}
		t.Logf("SIGKILLed processor B for good, with %d of %d results out; producing the second half of the input", got, n)
		produceStreamInput(ctx, t, producer, in, input[half:])
		w.waitComplete(ctx, fmt.Sprintf("%d results", n), atLeast(n))
		checkStreamResults(t, want, w.finish(ctx), names, false)
	})
}

// TestStreamClusterLeaderKill runs a processor against three brokers, with
// the input and output replicated three times, SIGKILLs the leader of an
// input partition mid-stream, restarts it later, and checks that the
// results are exact.
func TestStreamClusterLeaderKill(t *testing.T) {
	c := startClusterWith(t, "--group-initial-rebalance-delay", "0s", "--transaction-abort-check-interval", "1s")
	ctx := testContext(t, 4*time.Minute)
	const in, out, app, partitions = "stream-cluster-in", "stream-cluster-out", "stream-cluster", 3
	adm := kadm.NewClient(c.client(nil))
	createClusterTopic(ctx, t, adm, in, partitions, 3)
	createClusterTopic(ctx, t, adm, out, partitions, 3)
	checkReplicaSets(t, in, c.waitLeadersEverywhere(ctx, in, partitions, nil), 3)
	c.waitLeadersEverywhere(ctx, out, partitions, nil)

	q := streamQuery{window: tumblingWindow(10 * time.Second), grace: streamGrace, aggs: []string{"count", "sum:price"}, key: "key", time: "timestamp"}
	input := genStreamInput(inputSpec{seed: 9, records: 60_000, keys: 30, partitions: partitions, step: 20,
		lag: 2 * streamGrace, flushLead: 10*10_000 + 10*streamGrace})
	_, want := expectResults(t, input, q, true)
	// No RecordDeliveryTimeout: franz-go counts it from the record
	// timestamp, here an event time long past.
	producer := c.client(nil, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	// Half the input first; the rest while the leader is dead, so that
	// the processor works through the failover.
	half := len(input) / 2
	produceStreamInput(ctx, t, producer, in, input[:half])

	seeds := c.addrs(c.liveIDs())
	w := &streamWatch{t: t, reader: startResultReader(ctx, t, seeds, out), adm: adm, app: app, input: in}
	args := append(streamArgs(strings.Join(seeds, ","), in, out, app, t.TempDir(), "close", q), "--replication-factor", "3")
	w.procs = []*streamProc{startStream(t, "processor", args...)}
	n := len(want)
	w.waitFor(ctx, fmt.Sprintf("%d results", n/4), atLeast(n/4))

	current := c.newestLeaders(in)
	victim, epoch := current[0].Leader, current[0].Epoch
	if victim < 1 || victim > clusterSize {
		t.Fatalf("input partition 0 has no leader: %+v", current)
	}
	before := w.reader.count()
	killedAt := time.Now()
	c.broker(victim).Kill()
	t.Logf("SIGKILLed broker %d, leader of input partition 0 at epoch %d, with %d of %d results out", victim, epoch, before, n)
	c.waitLeaders(ctx, in, partitions, func(p int32, l partLeader) bool { return p != 0 || l.Epoch > epoch })
	produceStreamInput(ctx, t, producer, in, input[half:])
	// The processor goes on with two brokers for a while (as far as the
	// changelog's replicas allow).
	w.waitFor(ctx, "results after the kill", func(r *resultReader) bool {
		return r.count() >= min(n, before+n/10) || time.Since(killedAt) > 20*time.Second
	})
	t.Logf("%d results out %v after the kill; restarting broker %d", w.reader.count(), time.Since(killedAt).Round(time.Millisecond), victim)
	c.broker(victim).Restart()
	c.waitReady(ctx)

	w.waitComplete(ctx, fmt.Sprintf("%d results", n), atLeast(n))
	checkStreamResults(t, want, w.finish(ctx), q.aggNames(), false)
}
