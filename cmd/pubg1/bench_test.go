package main

import (
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// parseBench parses a bench command line and returns the run command.
func parseBench(t *testing.T, args ...string) (*cli, string) {
	t.Helper()
	var c cli
	p := kong.Must(&c, kong.Name("pubg1"), kong.WithHyphenPrefixedParameters(true))
	kctx, err := p.Parse(append([]string{"bench"}, args...))
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &c, kctx.Command()
}

func TestBenchFlagsOverridePreset(t *testing.T) {
	c, cmd := parseBench(t, "--preset", "latency", "--rate", "250", "--partitions", "2", "--acks", "1", "--backlog", "1MB", "--warmup", "0s")
	if cmd != "bench run" {
		t.Fatalf("command %q, want the default bench run", cmd)
	}
	w, p, err := c.Bench.Run.workload([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "latency" || w.Rate != 250 || w.Partitions != 2 || w.Replication != 3 || w.Acks != 1 || w.Idempotent || w.Backlog != 1_000_000 || w.Warmup != 0 {
		t.Fatalf("workload %+v", w)
	}
	if w.Duration != time.Minute {
		t.Fatalf("duration %v, want the preset's minute", w.Duration)
	}
}

func TestBenchRateModes(t *testing.T) {
	c, _ := parseBench(t, "--rate", "search")
	if _, p, err := c.Bench.Run.workload([]string{"x:1"}); err != nil || !p.Search {
		t.Fatalf("--rate search: search %v, %v", p.Search, err)
	}
	c, _ = parseBench(t, "--rate", "max")
	if w, _, err := c.Bench.Run.workload([]string{"x:1"}); err != nil || w.Rate != 0 {
		t.Fatalf("--rate max: rate %v, %v", w.Rate, err)
	}
	c, _ = parseBench(t, "--rate", "fast")
	if _, _, err := c.Bench.Run.workload([]string{"x:1"}); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Fatalf("--rate fast accepted: %v", err)
	}
	c, _ = parseBench(t, "--preset", "seed")
	w, p, err := c.Bench.Run.workload([]string{"x:1"})
	if err != nil || p.Cluster != 4 || p.Faults == "" || w.Group != "bench" || w.Partitions != 1 {
		t.Fatalf("seed preset: %+v %+v %v", w, p, err)
	}
}

func TestBenchSubcommands(t *testing.T) {
	if _, cmd := parseBench(t, "limits", "--dir", "/tmp"); cmd != "bench limits" {
		t.Fatalf("command %q", cmd)
	}
	c, cmd := parseBench(t, "compare", "--a", "127.0.0.1:9092", "--b", "127.0.0.1:19092", "--rounds", "2", "--rate", "500")
	if cmd != "bench compare" || c.Bench.Compare.Rounds != 2 {
		t.Fatalf("command %q, rounds %d", cmd, c.Bench.Compare.Rounds)
	}
	if w, _, err := c.Bench.Compare.workload([]string{c.Bench.Compare.A}); err != nil || w.Rate != 500 {
		t.Fatalf("compare workload rate %v, %v", w.Rate, err)
	}
}
