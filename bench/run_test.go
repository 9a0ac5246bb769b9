package bench

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestRunReusedTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := startBroker(t, pubg1Binary(t), "--group-initial-rebalance-delay", "0s")
	w := smallWorkload(p.Addr)
	w.Topic = "reused"
	w.Duration, w.Warmup = 2*time.Second, 0
	first, err := Run(context.Background(), w, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Run(context.Background(), w, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var before int64
	for _, o := range second.StartOffsets {
		before += o
	}
	if before != first.Summary.Acked {
		t.Fatalf("second run starts at %v (%d records), the first wrote %d", second.StartOffsets, before, first.Summary.Acked)
	}
	// Only the second run's records count: nothing of the first is read
	// or audited.
	s := second.Summary
	if s.Foreign != 0 || s.Consumed != s.Acked || second.Audit.Acked != s.Acked || !second.Audit.OK() {
		t.Fatalf("second run: acknowledged %d, consumed %d, foreign %d, audit %+v", s.Acked, s.Consumed, s.Foreign, second.Audit)
	}
}

func TestRunBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := startBroker(t, pubg1Binary(t), "--group-initial-rebalance-delay", "0s")
	w := smallWorkload(p.Addr)
	w.Backlog = 100 << 10 // 100 KiB: half a second at 200 records/s of 1 KiB
	w.RecordSize, w.Rate = 1024, 200
	w.Duration, w.Warmup = 2*time.Second, 0
	rep, err := Run(context.Background(), w, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := rep.Backlog
	if b == nil || !b.Complete || b.Bytes < w.Backlog || b.Records == 0 || b.DrainedAfter < b.BuiltAfter {
		t.Fatalf("backlog %+v", b)
	}
	if !rep.Audit.OK() || rep.Summary.Consumed < rep.Summary.Acked {
		t.Fatalf("audit %+v", rep.Audit)
	}
}

// pauseFaults pauses a broker with SIGSTOP and resumes it on a schedule:
// a real fault, injected through the FaultSource interface.
type pauseFaults struct {
	p       *Proc
	pause   time.Duration
	resume  time.Duration
	mu      sync.Mutex
	current string
}

func (f *pauseFaults) Current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

func (f *pauseFaults) Run(ctx context.Context, start time.Time, events chan<- FaultEvent) error {
	defer f.p.Resume()
	steps := []struct {
		at   time.Duration
		kind FaultKind
		do   func() error
		cur  string
	}{{f.pause, LeaderPause, f.p.Pause, "broker 1 paused"}, {f.resume, LeaderResume, f.p.Resume, ""}}
	for _, s := range steps {
		timer := time.NewTimer(time.Until(start.Add(s.at)))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		ev := FaultEvent{At: time.Now(), Kind: s.kind, Broker: 1}
		if err := s.do(); err != nil {
			ev.Err = err.Error()
		}
		f.mu.Lock()
		f.current = s.cur
		f.mu.Unlock()
		events <- ev
	}
	return nil
}

func TestRunWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := startBroker(t, pubg1Binary(t), "--group-initial-rebalance-delay", "0s")
	w := smallWorkload(p.Addr)
	w.Duration, w.Warmup = 4*time.Second, 0
	faults := &pauseFaults{p: p, pause: time.Second, resume: 2 * time.Second}
	var progress strings.Builder
	rep, err := Run(context.Background(), w, RunOptions{Faults: faults, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	if len(rep.Faults) != 2 || rep.Faults[0].Event.Kind != LeaderPause || rep.Faults[1].Event.Kind != LeaderResume {
		t.Fatalf("fault timeline %+v", rep.Faults)
	}
	if rep.Faults[0].At <= 0 || rep.Faults[0].BaselineRate <= 0 {
		t.Fatalf("pause at %.2f s with baseline %.1f/s", rep.Faults[0].At, rep.Faults[0].BaselineRate)
	}
	if !rep.Audit.OK() || rep.Audit.Acked == 0 {
		t.Fatalf("audit %+v", rep.Audit)
	}
	var sum strings.Builder
	rep.WriteSummary(&sum)
	t.Log("\n" + sum.String())
	dir := t.TempDir()
	if d := os.Getenv("PUBG1_BENCH_KEEP"); d != "" {
		dir = d
	}
	files, err := rep.WriteFiles(dir, "faults")
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files)
	validateReport(t, files[0])
}

func TestCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	bin := pubg1Binary(t)
	a := startBroker(t, bin, "--group-initial-rebalance-delay", "0s")
	b := startBroker(t, bin, "--group-initial-rebalance-delay", "0s")
	w := smallWorkload()
	w.Duration, w.Warmup = 2*time.Second, 500*time.Millisecond
	cmp, err := Compare(context.Background(), w, Side{Name: "a", Bootstrap: []string{a.Addr}}, Side{Name: "b", Bootstrap: []string{b.Addr}}, 1, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.A.Rounds) != 1 || len(cmp.B.Rounds) != 1 || cmp.A.Rounds[0].Target.Label != "a" {
		t.Fatalf("rounds %d and %d", len(cmp.A.Rounds), len(cmp.B.Rounds))
	}
	if cmp.Rows[0].Figure != "records/s" || cmp.Rows[0].A == 0 || cmp.Rows[0].Ratio == 0 {
		t.Fatalf("rows %+v", cmp.Rows)
	}
	var table strings.Builder
	cmp.WriteTable(&table)
	if !strings.Contains(table.String(), "b/a") {
		t.Fatalf("table:\n%s", table.String())
	}
	files, err := cmp.WriteFiles(t.TempDir(), "cmp")
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files)
}

func TestSearch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := startBroker(t, pubg1Binary(t), "--group-initial-rebalance-delay", "0s")
	w := smallWorkload(p.Addr)
	w.Warmup = 500 * time.Millisecond
	sc := SearchConfig{Start: 100, Step: time.Second, MaxSteps: 2, Precision: 0.05}
	res, rep, err := Search(context.Background(), w, sc, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Steps[0].Target != 100 {
		t.Fatalf("steps %+v", res.Steps)
	}
	// The second step follows the first's outcome.
	if want := map[bool]float64{true: 200, false: 50}[res.Steps[0].Sustained]; res.Steps[1].Target != want {
		t.Fatalf("second step at %v after %+v", res.Steps[1].Target, res.Steps[0])
	}
	if (res.Sustained > 0) != (rep != nil) {
		t.Fatalf("sustained %v, report %v", res.Sustained, rep != nil)
	}
}

func TestMeasureLimits(t *testing.T) {
	cfg := LimitsConfig{Dir: t.TempDir(), Block: 64 << 10, DiskBytes: 4 << 20, Time: 200 * time.Millisecond}
	l, err := MeasureLimits(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.DiskBytes == 0 || l.DiskMBPerSec <= 0 || l.LoopbackBytes == 0 || l.LoopbackMBPerSec <= 0 {
		t.Fatalf("limits %+v", l)
	}
	entries, _ := os.ReadDir(cfg.Dir)
	if len(entries) != 0 {
		t.Fatalf("left %d files behind", len(entries))
	}
	path := t.TempDir() + "/limits.json"
	if err := WriteLimits(path, l); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLimits(path)
	if err != nil || back.DiskMBPerSec != l.DiskMBPerSec {
		t.Fatalf("read back %+v, %v", back, err)
	}
	rep := &Report{Workload: Workload{Replication: 3}, Summary: Summary{MBPerSec: l.DiskMBPerSec / 6}}
	if o := percentOfLimits(rep, l); o.DiskPercent < 49.9 || o.DiskPercent > 50.1 {
		t.Fatalf("a sixth of the disk rate times 3 replicas is %.1f%%, want 50%%", o.DiskPercent)
	}
}

func TestPresets(t *testing.T) {
	for _, name := range PresetNames {
		p, err := PresetFor(name, DefaultWorkload())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Workload.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	seed, _ := PresetFor("seed", DefaultWorkload())
	if w := seed.Workload; w.Partitions != 1 || w.Group != "bench" || w.Duration != 40*time.Second || w.Rate != 100 || seed.Cluster != 4 {
		t.Fatalf("seed preset %+v", seed)
	}
	if _, err := PresetFor("nope", DefaultWorkload()); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

func TestWorkloadValidate(t *testing.T) {
	w := DefaultWorkload()
	w.RecordSize, w.Keys, w.Acks = 10, "hot", 1
	err := w.Validate()
	if err == nil {
		t.Fatal("invalid workload accepted")
	}
	for _, want := range []string{"record size", "keys", "idempotence"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %s", err, want)
		}
	}
}

// TestDockerComposeKafka checks that docker-compose.kafka.yml is valid YAML
// describing three KRaft brokers on 127.0.0.1 with replication factor 3
// and min.insync.replicas 2.
func TestDockerComposeKafka(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.kafka.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Ports       []string          `yaml:"ports"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Services) != 3 {
		t.Fatalf("%d services, want 3", len(doc.Services))
	}
	ports := map[string]bool{}
	for name, s := range doc.Services {
		env := s.Environment
		if !strings.HasPrefix(s.Image, "apache/kafka:") {
			t.Fatalf("%s: image %s", name, s.Image)
		}
		for k, v := range map[string]string{
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_DEFAULT_REPLICATION_FACTOR":               "3",
			"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
		} {
			if env[k] != v {
				t.Fatalf("%s: %s=%q, want %q", name, k, env[k], v)
			}
		}
		if strings.Count(env["KAFKA_CONTROLLER_QUORUM_VOTERS"], "@") != 3 {
			t.Fatalf("%s: voters %q", name, env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Fatalf("%s: port %s not on 127.0.0.1", name, p)
			}
			ports[p] = true
		}
	}
	for _, p := range []string{"19092", "19093", "19094"} {
		if !ports["127.0.0.1:"+p+":"+p] {
			t.Fatalf("no broker on 127.0.0.1:%s: %v", p, ports)
		}
	}
}
