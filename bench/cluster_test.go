package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The pubg1 binary the cluster tests run, built once per test binary run.
var testBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testBin.dir != "" {
		os.RemoveAll(testBin.dir)
	}
	os.Exit(code)
}

// pubg1Binary builds cmd/pubg1 the first time a test asks for it, unless
// PUBG1_BROKER_BINARY names a pubg1 build to run instead.
func pubg1Binary(t *testing.T) string {
	t.Helper()
	if path := os.Getenv("PUBG1_BROKER_BINARY"); path != "" {
		return path
	}
	testBin.once.Do(func() {
		testBin.dir, testBin.err = os.MkdirTemp("", "pubg1-bench-bin-")
		if testBin.err == nil {
			testBin.path = buildBinary(t, testBin.dir)
		}
	})
	if testBin.err != nil || testBin.path == "" {
		t.Fatalf("no pubg1 binary: %v", testBin.err)
	}
	return testBin.path
}

// startTestCluster starts a 3-broker cluster that the test's cleanup
// closes, with the brokers' output in the test log on failure.
func startTestCluster(t *testing.T, cfg ClusterConfig) *Cluster {
	t.Helper()
	cfg.Binary, cfg.Brokers = pubg1Binary(t), 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			// A broker that hangs in its shutdown is the broker's
			// problem, not the supervisor's: Close killed it and cleaned
			// up all the same. Anything else fails the test.
			if onlyShutdownTimeouts(err) {
				t.Logf("closing the cluster: %v (killed after the grace period; goroutine dump in its output)", err)
			} else {
				t.Errorf("closing the cluster: %v", err)
			}
		}
		if t.Failed() {
			for id := int32(1); id <= 3; id++ {
				t.Logf("broker %d output:\n%s", id, tail(c.Broker(id).Output(), 20000))
			}
			if b, ok := cfg.Log.(*syncBuffer); ok {
				t.Logf("brokers' output:\n%s", tail(b.String(), 8000))
			}
		}
	})
	return c
}

// onlyShutdownTimeouts reports whether every error joined in err is a
// broker that did not stop within its grace period.
func onlyShutdownTimeouts(err error) bool {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return errors.Is(err, ErrShutdownTimeout)
	}
	for _, e := range j.Unwrap() {
		if e != nil && !onlyShutdownTimeouts(e) {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// createTopic creates a one-partition topic with three replicas and waits
// until it has a leader.
func createTopic(t *testing.T, c *Cluster, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
	eventually(t, "a leader of "+topic, func() bool {
		for id := int32(1); id <= 3; id++ {
			if v, err := metadataFrom(c.Broker(id).Addr, topic); err != nil || v.leader < 0 {
				return false
			}
		}
		return true
	})
}

// metadataFrom asks the broker at addr itself for partition 0 of topic.
func metadataFrom(addr, topic string) (partitionView, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0))
	if err != nil {
		return partitionView{}, err
	}
	defer cl.Close()
	resp, err := askMetadata(context.Background(), cl, topic, 2*time.Second)
	if err != nil {
		return partitionView{}, err
	}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.Partition == 0 && p.ErrorCode == 0 {
				return partitionView{controller: resp.ControllerID, leader: p.Leader, epoch: p.LeaderEpoch, replicas: p.Replicas}, nil
			}
		}
	}
	return partitionView{controller: resp.ControllerID, leader: -1}, nil
}

// eventually fails t unless cond holds within 30 s (failover takes a
// couple of seconds; this machine may be loaded).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !ktest.Until(ctx, 50*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// procState is the state letter of /proc/PID/stat ("R", "S", "T", ...).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading the state of pid %d: %v", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

// procComm is the command name of the process.
func procComm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatalf("reading the name of pid %d: %v", pid, err)
	}
	return strings.TrimSpace(string(b))
}

// load is an idempotent acks=all producer at a bounded rate, remembering
// which records were acknowledged.
type load struct {
	cl    *kgo.Client
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked map[string]bool
	errs  map[string]int
	sent  int
}

// startLoad produces "rec-N" to partition 0 of topic at about rate records
// a second, at most limit records, until stopped.
func startLoad(t *testing.T, c *Cluster, topic string, rate, limit int) *load {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(time.Minute), kgo.ProducerLinger(0),
		// A paused leader holds requests without answering: give up on
		// it within seconds rather than the default 40.
		kgo.ProduceRequestTimeout(5*time.Second), kgo.RequestTimeoutOverhead(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	l := &load{cl: cl, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]bool{}, errs: map[string]int{}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := range limit {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			v := fmt.Sprintf("rec-%d", n)
			l.mu.Lock()
			l.sent++
			l.mu.Unlock()
			cl.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.errs[err.Error()]++
					return
				}
				l.acked[v] = true
			})
		}
	}()
	t.Cleanup(func() { l.finish(t) })
	return l
}

// ackedCount is how many records have been acknowledged so far.
func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// progressing waits until more records are acknowledged than now.
func (l *load) progressing(t *testing.T, what string) {
	t.Helper()
	n := l.ackedCount()
	eventually(t, "acknowledged writes "+what, func() bool { return l.ackedCount() > n+20 })
}

// finish stops producing, waits for the records in flight and returns
// the acknowledged values.
func (l *load) finish(t *testing.T) map[string]bool {
	t.Helper()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := l.cl.Flush(ctx); err != nil {
		t.Errorf("flushing the producer: %v", err)
	}
	l.cl.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

// audit reads partition 0 of topic from the start to its end and fails
// the test if an acknowledged record is missing.
func audit(t *testing.T, c *Cluster, topic string, acked map[string]bool, sent int, errs map[string]int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		t.Fatalf("end offset of %s/0: %+v", topic, end)
	}
	seen := map[string]int{}
	next := int64(0)
	for next < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s: %v", next, end.Offset, topic, ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			next = r.Offset + 1
		})
	}
	var lost []string
	for v := range acked {
		if seen[v] == 0 {
			lost = append(lost, v)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("audit: %d sent, %d acknowledged, %d in the log (end offset %d), %d duplicates, failures %v",
		sent, len(acked), len(seen), end.Offset, dups, errs)
	if len(acked) == 0 {
		t.Fatal("no record acknowledged")
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged records lost, e.g. %v", len(lost), lost[:min(10, len(lost))])
	}
}

// finishAndAudit stops the load and audits the topic.
func (l *load) finishAndAudit(t *testing.T, c *Cluster, topic string) {
	t.Helper()
	acked := l.finish(t)
	l.mu.Lock()
	sent, errs := l.sent, l.errs
	l.mu.Unlock()
	audit(t, c, topic, acked, sent, errs)
}

// newLeaderElected waits until every broker but those in skip names a
// leader other than old, all the same one, and returns it.
func newLeaderElected(t *testing.T, c *Cluster, topic string, old int32, skip ...int32) int32 {
	t.Helper()
	return agreedOn(t, c, topic, "leader", func(v partitionView) int32 { return v.leader }, old, skip)
}

// controllerAgreed waits until every broker but those in skip names the
// same controller, other than old, and returns it.
func controllerAgreed(t *testing.T, c *Cluster, topic string, old int32, skip ...int32) int32 {
	t.Helper()
	return agreedOn(t, c, topic, "controller", func(v partitionView) int32 { return v.controller }, old, skip)
}

// agreedOn waits until every broker but those in skip names, in its
// metadata for topic, the same broker as the what that pick reads, other
// than old, and returns it.
func agreedOn(t *testing.T, c *Cluster, topic, what string, pick func(partitionView) int32, old int32, skip []int32) int32 {
	t.Helper()
	var named int32
	var views []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok := ktest.Until(ctx, 50*time.Millisecond, func() bool {
		named, views = -1, nil
		agreed := true
		for id := int32(1); id <= int32(c.Brokers()); id++ {
			if containsID(skip, id) {
				continue
			}
			v, err := metadataFrom(c.Broker(id).Addr, topic)
			got := pick(v)
			views = append(views, fmt.Sprintf("broker %d: %s %d epoch %d err %v", id, what, got, v.epoch, err))
			if err != nil || got < 0 || got == old || (named >= 0 && got != named) {
				agreed = false
				continue
			}
			named = got
		}
		return agreed
	})
	if !ok {
		t.Fatalf("no agreed %s other than %d within 30s; last views: %v", what, old, views)
	}
	return named
}

// leaderAgreed waits until every broker names every broker and the same
// leader.
func leaderAgreed(t *testing.T, c *Cluster, topic string) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id := int32(1); id <= int32(c.Brokers()); id++ {
		if err := c.WaitServing(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	return newLeaderElected(t, c, topic, -1)
}

// partitionAgreed waits until every broker names the same leader. After
// a cut is healed, the metadata of a broker that was cut off may name
// fewer brokers for a while (its fence lifted late), which is logged.
func partitionAgreed(t *testing.T, c *Cluster, topic string) int32 {
	t.Helper()
	leader := newLeaderElected(t, c, topic, -1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := int32(1); id <= int32(c.Brokers()); id++ {
		if err := c.WaitServing(ctx, id); err != nil {
			t.Logf("not yet whole: %v", err)
		}
	}
	return leader
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, nil))
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// inject applies one fault and fails the test if it did not work.
func inject(t *testing.T, inj *Injector, kind FaultKind) FaultEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ev := inj.Inject(ctx, kind)
	if ev.Err != "" {
		t.Fatalf("%s: %s", kind, ev.Err)
	}
	if ev.Kind != kind || (kind != NetHeal && ev.Broker < 1) {
		t.Fatalf("%s: event %+v", kind, ev)
	}
	t.Logf("%s broker %d: %s", kind, ev.Broker, ev.Detail)
	return ev
}

// TestClusterFaults injects every kill and pause fault into a 3-broker
// cluster on loopback while an idempotent acks=all producer runs, checks
// that each one happened, then runs a schedule that is cut short, and
// audits the log: every acknowledged record is there.
func TestClusterFaults(t *testing.T) {
	data := t.TempDir()
	t.Cleanup(func() {
		// Run after Close: a data directory given is kept.
		if _, err := os.Stat(data + "/1"); err != nil {
			t.Errorf("data directory of broker 1 after Close: %v", err)
		}
	})
	out := &syncBuffer{}
	c := startTestCluster(t, ClusterConfig{DataDir: data, Log: out, Args: []string{"--log-level", "info"}})
	if got := len(c.Bootstrap()); got != 3 {
		t.Fatalf("%d bootstrap addresses", got)
	}
	for id := 1; id <= 3; id++ {
		if prefix := fmt.Sprintf("[broker %d] ", id); !strings.Contains(out.String(), prefix) {
			t.Fatalf("no output prefixed %q in the log:\n%s", prefix, tail(out.String(), 2000))
		}
	}
	const topic = "faults"
	createTopic(t, c, topic)
	l := startLoad(t, c, topic, 200, 20000)
	l.progressing(t, "before the faults")
	inj := NewInjector(c, nil, topic, 0, nil, testLogger(t))
	defer inj.closeClients()

	// Leader killed: the process is gone and the others elect another.
	leader := leaderAgreed(t, c, topic)
	killed := c.Broker(leader).Pid()
	ev := inject(t, inj, LeaderKill)
	if ev.Broker != leader {
		t.Fatalf("leader-kill hit broker %d, the leader is %d", ev.Broker, leader)
	}
	if c.Broker(leader).Alive() {
		t.Fatalf("broker %d still running after leader-kill", leader)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", killed)); err == nil {
		t.Fatalf("pid %d still exists", killed)
	}
	if cur := inj.Current(); cur != fmt.Sprintf("leader-kill broker %d", leader) {
		t.Fatalf("Current() = %q", cur)
	}
	newLeaderElected(t, c, topic, leader, leader)
	l.progressing(t, "after leader-kill")

	// Restarted: same port, serving, back in the cluster's metadata.
	inject(t, inj, LeaderRestart)
	if !c.Broker(leader).Alive() || c.Broker(leader).Pid() == killed {
		t.Fatalf("broker %d not restarted", leader)
	}
	if cur := inj.Current(); cur != "" {
		t.Fatalf("Current() = %q after the restart", cur)
	}
	leaderAgreed(t, c, topic)
	l.progressing(t, "after leader-restart")

	// Follower killed: a replica that is not the leader.
	leader = leaderAgreed(t, c, topic)
	ev = inject(t, inj, FollowerKill)
	if ev.Broker == leader || c.Broker(ev.Broker).Alive() {
		t.Fatalf("follower-kill hit broker %d (leader %d, alive %v)", ev.Broker, leader, c.Broker(ev.Broker).Alive())
	}
	l.progressing(t, "with a follower down")
	inject(t, inj, FollowerRestart)
	if !c.Broker(ev.Broker).Alive() {
		t.Fatalf("broker %d not restarted", ev.Broker)
	}

	// Leader paused: stopped ('T'), still there, another leader elected.
	leader = leaderAgreed(t, c, topic)
	ev = inject(t, inj, LeaderPause)
	if ev.Broker != leader {
		t.Fatalf("leader-pause hit broker %d, the leader is %d", ev.Broker, leader)
	}
	pid := c.Broker(leader).Pid()
	eventually(t, "the paused leader stopped", func() bool { return procState(t, pid) == "T" })
	newLeaderElected(t, c, topic, leader, leader)
	l.progressing(t, "with the old leader paused")
	inject(t, inj, LeaderResume)
	eventually(t, "the resumed broker running", func() bool { return procState(t, pid) != "T" })
	leaderAgreed(t, c, topic)

	// Follower paused.
	leader = leaderAgreed(t, c, topic)
	ev = inject(t, inj, FollowerPause)
	pid = c.Broker(ev.Broker).Pid()
	if ev.Broker == leader {
		t.Fatalf("follower-pause hit the leader %d", leader)
	}
	eventually(t, "the paused follower stopped", func() bool { return procState(t, pid) == "T" })
	l.progressing(t, "with a follower paused")
	inject(t, inj, FollowerResume)
	eventually(t, "the resumed follower running", func() bool { return procState(t, pid) != "T" })

	// Controller paused: the broker every broker names as the
	// controller; the others elect another.
	leaderAgreed(t, c, topic)
	ctrl := controllerAgreed(t, c, topic, -1)
	ev = inject(t, inj, ControllerPause)
	if ev.Broker != ctrl {
		t.Fatalf("controller-pause hit broker %d, the controller is %d", ev.Broker, ctrl)
	}
	pid = c.Broker(ctrl).Pid()
	eventually(t, "the paused controller stopped", func() bool { return procState(t, pid) == "T" })
	controllerAgreed(t, c, topic, ctrl, ctrl)
	l.progressing(t, "with the controller paused")
	inject(t, inj, ControllerResume)
	eventually(t, "the resumed controller running", func() bool { return procState(t, pid) != "T" })

	// Undoing what is not in effect fails as an event, not a panic.
	if ev := inj.Inject(context.Background(), LeaderRestart); ev.Err == "" {
		t.Fatalf("leader-restart with nothing killed: %+v", ev)
	}
	if ev := inj.Inject(context.Background(), LeaderIsolate); ev.Err == "" {
		t.Fatalf("leader-isolate without namespaces: %+v", ev)
	}

	// A schedule cut short: Run heals what is in effect when ctx ends.
	t.Run("Run", func(t *testing.T) {
		leader := leaderAgreed(t, c, topic)
		inj := NewInjector(c, c.Bootstrap(), topic, 0, []Fault{
			{0, FollowerPause}, {100 * time.Millisecond, LeaderKill}, {time.Hour, LeaderRestart},
		}, testLogger(t))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := make(chan FaultEvent, 10)
		errc := make(chan error, 1)
		go func() { errc <- inj.Run(ctx, time.Now(), events) }()
		var got []FaultEvent
		for len(got) < 2 {
			got = append(got, <-events)
		}
		if got[0].Kind != FollowerPause || got[1].Kind != LeaderKill || got[1].Broker != leader || got[0].Err != "" || got[1].Err != "" {
			t.Fatalf("events %+v", got)
		}
		if cur := inj.Current(); !strings.Contains(cur, "leader-kill") || !strings.Contains(cur, "follower-pause") {
			t.Fatalf("Current() = %q", cur)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		close(events)
		for ev := range events {
			got = append(got, ev)
		}
		kinds := []FaultKind{}
		for _, ev := range got {
			if ev.Err != "" {
				t.Errorf("event %+v", ev)
			}
			kinds = append(kinds, ev.Kind)
		}
		if fmt.Sprint(kinds) != fmt.Sprint([]FaultKind{FollowerPause, LeaderKill, FollowerResume, LeaderRestart}) {
			t.Fatalf("events %+v", got)
		}
		for id := int32(1); id <= 3; id++ {
			if !c.Broker(id).Alive() || procState(t, c.Broker(id).Pid()) == "T" {
				t.Fatalf("broker %d not whole after Run", id)
			}
		}
		if cur := inj.Current(); cur != "" {
			t.Fatalf("Current() = %q after Run", cur)
		}
		l.progressing(t, "after Run")
	})

	l.finishAndAudit(t, c, topic)
}

// TestClusterNetns runs a 3-broker cluster in network namespaces and
// cuts the leader and then a follower off from the other brokers while
// the client keeps reaching all of them, and kills the leader there to
// check that the kill hits the broker and not the ip(8) that started it.
func TestClusterNetns(t *testing.T) {
	if err := netnsSupported(); err != nil {
		t.Skipf("network namespaces unavailable (%v); the network cut faults are not tested", err)
	}
	// Leftovers of a supervisor that died: StartCluster removes them.
	dead := deadPid(t)
	leftNS := fmt.Sprintf("%s%d-1", nsPrefix, dead)
	leftBr := fmt.Sprintf("%s%d", bridgePrefix, dead)
	ctx := context.Background()
	if err := ipCmd(ctx, "netns", "add", leftNS); err != nil {
		t.Fatal(err)
	}
	if err := ipCmd(ctx, "link", "add", leftBr, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if names := ourNames(t, os.Getpid()); len(names) > 0 {
			t.Errorf("left behind after Close: %v", names)
		}
	})
	var dataDir string
	t.Cleanup(func() {
		// Run after Close: a temporary data directory is removed.
		if _, err := os.Stat(dataDir); dataDir != "" && err == nil {
			t.Errorf("temporary data directory %s kept after Close", dataDir)
		}
	})
	c := startTestCluster(t, ClusterConfig{Netns: true, Args: []string{"--log-level", "info"}})
	dataDir = c.DataDir()
	if dataDir == "" {
		t.Fatal("no data directory")
	}
	if names := ourNames(t, dead); len(names) > 0 {
		t.Fatalf("leftovers of pid %d not removed: %v", dead, names)
	}
	for id := int32(1); id <= 3; id++ {
		p := c.Broker(id)
		if comm := procComm(t, p.Pid()); comm != "pubg1" {
			t.Fatalf("broker %d pid %d is %q, not the broker", id, p.Pid(), comm)
		}
		if !strings.HasPrefix(p.Addr, "10.241.") {
			t.Fatalf("broker %d on %s, not a namespace address", id, p.Addr)
		}
	}
	const topic = "netns"
	createTopic(t, c, topic)
	l := startLoad(t, c, topic, 200, 20000)
	l.progressing(t, "before the faults")
	inj := NewInjector(c, nil, topic, 0, nil, testLogger(t))
	defer inj.closeClients()

	// The leader cut off: the other two elect a leader among them, the
	// client still reaches the old one, and writes go on.
	leader := leaderAgreed(t, c, topic)
	ev := inject(t, inj, LeaderIsolate)
	if ev.Broker != leader || len(c.Cuts()) != 2 {
		t.Fatalf("leader-isolate hit broker %d (leader %d), cuts %v", ev.Broker, leader, c.Cuts())
	}
	newLeaderElected(t, c, topic, leader, leader)
	if _, err := metadataFrom(c.Broker(leader).Addr, topic); err != nil {
		t.Fatalf("the client cannot reach the isolated broker %d: %v", leader, err)
	}
	// Cut off from a quorum, it acknowledges nothing written to it and
	// gives the leadership up; a write it holds unanswered (no quorum to
	// commit it) counts as not acknowledged.
	var answers []string
	defer func() { t.Logf("writes to the isolated broker: %v", answers) }()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	if !ktest.Until(ctx2, 100*time.Millisecond, func() bool {
		code, err := produceDirect(c.Broker(leader).Addr, topic)
		if err != nil {
			answers = append(answers, "no answer: "+err.Error())
			return false
		}
		if code == 0 {
			t.Fatalf("the isolated broker %d acknowledged an acks=all write", leader)
		}
		answers = append(answers, kerr.ErrorForCode(code).Error())
		return code == kerr.NotLeaderForPartition.Code
	}) {
		t.Fatalf("the isolated broker %d kept leadership for a minute", leader)
	}
	if _, err := metadataFrom(c.Broker(leader).Addr, topic); err != nil {
		t.Fatalf("the client cannot reach the isolated broker %d: %v", leader, err)
	}
	inject(t, inj, NetHeal)
	if len(c.Cuts()) != 0 {
		t.Fatalf("cuts %v after heal", c.Cuts())
	}
	partitionAgreed(t, c, topic)

	// A follower cut off: the leader keeps a quorum with the third.
	leader = partitionAgreed(t, c, topic)
	ev = inject(t, inj, FollowerIsolate)
	if ev.Broker == leader {
		t.Fatalf("follower-isolate hit the leader %d", leader)
	}
	l.progressing(t, "with a follower cut off")
	if _, err := metadataFrom(c.Broker(ev.Broker).Addr, topic); err != nil {
		t.Fatalf("the client cannot reach the isolated broker %d: %v", ev.Broker, err)
	}
	inject(t, inj, NetHeal)
	partitionAgreed(t, c, topic)

	// Kill and restart inside a namespace.
	leader = partitionAgreed(t, c, topic)
	pid := c.Broker(leader).Pid()
	inject(t, inj, LeaderKill)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("broker %d pid %d still exists after leader-kill", leader, pid)
	}
	newLeaderElected(t, c, topic, leader, leader)
	inject(t, inj, LeaderRestart)
	if comm := procComm(t, c.Broker(leader).Pid()); comm != "pubg1" {
		t.Fatalf("restarted broker is %q", comm)
	}
	partitionAgreed(t, c, topic)
	l.progressing(t, "after the faults")

	// A seeded chaos schedule through Run: every kind, each event
	// without error, the cluster whole at the end.
	t.Run("Chaos", func(t *testing.T) {
		schedule := ChaosSchedule(1, 30*time.Second, true)
		t.Logf("schedule: %s", FormatFaults(schedule))
		inj := NewInjector(c, nil, topic, 0, schedule, testLogger(t))
		events := make(chan FaultEvent, len(schedule)+10)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := inj.Run(ctx, time.Now(), events); err != nil {
			t.Fatalf("Run: %v", err)
		}
		close(events)
		seen := map[FaultKind]int{}
		for ev := range events {
			if ev.Err != "" {
				t.Errorf("%s broker %d at %v: %s", ev.Kind, ev.Broker, ev.At.Format(time.TimeOnly), ev.Err)
			}
			seen[ev.Kind]++
		}
		for _, k := range FaultKinds() {
			if seen[k] == 0 {
				t.Errorf("no %s event", k)
			}
		}
		if len(c.Cuts()) != 0 || inj.Current() != "" {
			t.Fatalf("after Run: cuts %v, faults %q", c.Cuts(), inj.Current())
		}
		partitionAgreed(t, c, topic)
		l.progressing(t, "after the chaos")
	})
	l.finishAndAudit(t, c, topic)
}

// deadPid returns the PID of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// ourNames lists the namespaces and links named for supervisor pid.
func ourNames(t *testing.T, pid int) []string {
	t.Helper()
	names, err := namesOf(context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// produceDirect sends one acks=all record for partition 0 of topic to
// the broker at addr itself (no other broker is asked) and returns the
// partition's error code.
func produceDirect(addr, topic string) (int16, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.RequestTimeoutOverhead(2*time.Second))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	r := kmsg.NewRecord()
	r.Value = []byte("direct")
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: r.AppendTo(nil)}
	b := rb.AppendTo(nil)
	rb.Length = int32(len(b) - 12)
	b = rb.AppendTo(b[:0])
	rb.CRC = int32(crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 3000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	// Produce v13 names the topic by ID.
	mresp, err := askMetadata(context.Background(), cl, topic, 5*time.Second)
	if err != nil {
		return 0, err
	}
	for _, t := range mresp.Topics {
		rt.TopicID = t.TopicID
	}
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = rb.AppendTo(nil)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return 0, err
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("produce response %+v", pr)
	}
	return pr.Topics[0].Partitions[0].ErrorCode, nil
}

// requestTo sends req to the broker at addr alone, with no retries.
func requestTo(addr string, req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.RequestTimeoutOverhead(timeout))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()
	return cl.SeedBrokers()[0].Request(ctx, req)
}

// TestMetadataRelay cuts one broker off from the metadata leader while a
// third reaches both (a bridge): the cut-off broker still changes the
// metadata, its proposals relayed by the third, and does not take the
// metadata leadership to its side. A topic created through it is created;
// its answer may time out, since its own copy of the metadata cannot
// catch up until the cut heals, and a retry finds the topic. Then the
// metadata leader is cut off from both others: they elect another, and it
// steps down.
func TestMetadataRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	if err := netnsSupported(); err != nil {
		t.Skipf("needs network namespaces (root on Linux): %v", err)
	}
	c := startTestCluster(t, ClusterConfig{Netns: true, Args: []string{"--log-level", "info"}})
	controller := func(id int32) int32 {
		r, err := requestTo(c.Broker(id).Addr, kmsg.NewPtrMetadataRequest(), 2*time.Second)
		if err != nil {
			return -1
		}
		return r.(*kmsg.MetadataResponse).ControllerID
	}
	var leader int32 = -1
	eventually(t, "a metadata leader every broker names", func() bool {
		leader = controller(1)
		return leader > 0 && controller(2) == leader && controller(3) == leader
	})
	cutOff, bridge := leader%3+1, (leader+1)%3+1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Cut(ctx, leader, cutOff); err != nil {
		t.Fatal(err)
	}
	t.Logf("metadata leader %d cut from broker %d; broker %d reaches both", leader, cutOff, bridge)
	// Past the failure detector's verdict, so that the cut-off broker
	// knows it cannot forward to the leader itself.
	time.Sleep(3 * time.Second)

	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "relayed", 1, 3
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10_000
	var answers []string
	created := ktest.Until(ctx, 500*time.Millisecond, func() bool {
		r, err := requestTo(c.Broker(cutOff).Addr, req, 15*time.Second)
		if err != nil {
			answers = append(answers, err.Error())
			return false
		}
		code := r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode
		answers = append(answers, fmt.Sprint(kerr.ErrorForCode(code)))
		return code == 0 || code == kerr.TopicAlreadyExists.Code
	})
	if !created {
		t.Fatalf("broker %d, cut off from the metadata leader %d, created no topic: %v", cutOff, leader, answers)
	}
	t.Logf("answers of broker %d: %v", cutOff, answers)
	eventually(t, "the relayed topic in the bridge's metadata", func() bool {
		_, err := metadataFrom(c.Broker(bridge).Addr, "relayed")
		v, _ := metadataFrom(c.Broker(bridge).Addr, "relayed")
		return err == nil && len(v.replicas) == 3
	})
	if got := controller(bridge); got != leader {
		t.Errorf("metadata leader moved from %d to %d during the cut", leader, got)
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}

	// The metadata leader cut off from both others: they elect another,
	// and it stops naming itself the controller.
	eventually(t, "one metadata leader after the heal", func() bool {
		leader = controller(1)
		return leader > 0 && controller(2) == leader && controller(3) == leader
	})
	if err := c.Isolate(ctx, leader); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	others := []int32{leader%3 + 1, (leader+1)%3 + 1}
	eventually(t, "a new metadata leader, and the isolated one stepped down", func() bool {
		a, b := controller(others[0]), controller(others[1])
		return a > 0 && a != leader && a == b && controller(leader) != leader
	})
	t.Logf("metadata leader %d cut off from the others: replaced and stepped down after %v", leader, time.Since(cut).Round(10*time.Millisecond))
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
}
