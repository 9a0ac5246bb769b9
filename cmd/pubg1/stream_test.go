package main

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/pubg1/pubg1/streams"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// parseStream parses a stream command line after the required flags
// --in, --out and --app (later flags override them).
func parseStream(t *testing.T, args ...string) (*streamCmd, error) {
	t.Helper()
	t.Setenv("PUBG1_BROKERS", "") // restored after the test
	os.Unsetenv("PUBG1_BROKERS")
	var c cli
	p := kong.Must(&c, kong.Name("pubg1"), kong.WithHyphenPrefixedParameters(true))
	kctx, err := p.Parse(append([]string{"stream", "--in", "clicks", "--out", "counts", "--app", "demo"}, args...))
	if err != nil {
		return nil, err
	}
	if kctx.Command() != "stream" {
		t.Fatalf("command %q", kctx.Command())
	}
	return &c.Stream, nil
}

// streamConfig parses a command line and builds its configuration.
func streamConfig(t *testing.T, args ...string) streams.Config {
	t.Helper()
	c, err := parseStream(t, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	cfg, err := c.config(zerolog.Nop())
	if err != nil {
		t.Fatalf("%v: config: %v", args, err)
	}
	return cfg
}

func aggNames(aggs []streams.Agg) []string {
	var names []string
	for _, a := range aggs {
		names = append(names, a.Name())
	}
	return names
}

// extract runs a key or time function on a record; panicked reports a
// function that needed more of the event than a bare record gives.
func extract[T any](f func(*streams.Event) (T, bool), r *kgo.Record) (v T, ok, panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	v, ok = f(&streams.Event{Record: r})
	return v, ok, false
}

func TestStreamDefaults(t *testing.T) {
	cfg := streamConfig(t, "--window", "tumbling:10s")
	if !slices.Equal(cfg.Brokers, []string{"127.0.0.1:9092"}) || cfg.AppID != "demo" || cfg.Input != "clicks" || cfg.Output != "counts" {
		t.Fatalf("config %+v", cfg)
	}
	if got := cfg.Window.String(); got != "tumbling:10s" {
		t.Errorf("window %s", got)
	}
	if got := aggNames(cfg.Aggs); !slices.Equal(got, []string{"count"}) {
		t.Errorf("aggregates %v, want count", got)
	}
	if cfg.Emit != streams.EmitOnClose || cfg.Grace != 0 || cfg.Retention != 0 || cfg.StateDir != "" ||
		cfg.CommitInterval != 100*time.Millisecond || cfg.AtLeastOnce || cfg.Progress != nil {
		t.Errorf("config %+v", cfg)
	}
	r := &kgo.Record{Key: []byte("k1"), Value: []byte(`{"user":"u1","ts":5}`), Timestamp: time.UnixMilli(1234)}
	if k, ok, _ := extract(cfg.Key, r); k != "k1" || !ok {
		t.Errorf("default key gives %q, %v; want the record key", k, ok)
	}
	if ts, ok, _ := extract(cfg.Time, r); ts != 1234 || !ok {
		t.Errorf("default time gives %d, %v; want the record timestamp", ts, ok)
	}
}

func TestStreamWindows(t *testing.T) {
	for spec, want := range map[string]string{
		"tumbling:10s":   "tumbling:10s",
		"hopping:1m,10s": "hopping:1m0s,10s",
		"sliding:30s":    "sliding:30s",
		"session:5m":     "session:5m0s",
	} {
		if got := streamConfig(t, "--window", spec).Window.String(); got != want {
			t.Errorf("--window %s: %s, want %s", spec, got, want)
		}
	}
}

func TestStreamFlags(t *testing.T) {
	cfg := streamConfig(t, "--bootstrap", "a:9092, b:9092", "--window", "session:5m",
		"--agg", "count", "--agg", "avg:price", "--agg", "count-distinct:user", "--agg", "max:price",
		"--key", "field:user", "--time", "field:ts", "--grace", "2s", "--emit", "update",
		"--state-dir", "/tmp/state", "--commit-interval", "1s", "--retention", "1h", "--at-least-once", "--progress", "0")
	if !slices.Equal(cfg.Brokers, []string{"a:9092", "b:9092"}) {
		t.Errorf("brokers %q", cfg.Brokers)
	}
	if got := aggNames(cfg.Aggs); !slices.Equal(got, []string{"count", "avg_price", "count_distinct_user", "max_price"}) {
		t.Errorf("aggregates %v", got)
	}
	if cfg.Emit != streams.EmitOnUpdate || cfg.Grace != 2*time.Second || cfg.StateDir != "/tmp/state" ||
		cfg.CommitInterval != time.Second || cfg.Retention != time.Hour || !cfg.AtLeastOnce {
		t.Errorf("config %+v", cfg)
	}
	// The fields are read from the JSON value, never from the record key
	// or timestamp.
	r := &kgo.Record{Key: []byte("k1"), Value: []byte(`{"user":"u1","ts":5}`), Timestamp: time.UnixMilli(1234)}
	if k, ok, panicked := extract(cfg.Key, r); !panicked && (k != "u1" || !ok) {
		t.Errorf("--key field:user gives %q, %v; want u1", k, ok)
	}
	if ts, ok, panicked := extract(cfg.Time, r); !panicked && (ts != 5 || !ok) {
		t.Errorf("--time field:ts gives %d, %v; want 5", ts, ok)
	}

	c, err := parseStream(t, "--brokers", "c:9092", "--window", "tumbling:1s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := c.config(zerolog.Nop()); err != nil || !slices.Equal(cfg.Brokers, []string{"c:9092"}) {
		t.Errorf("--brokers: %q, %v", cfg.Brokers, err)
	}
}

func TestStreamBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--window", "tumbling"}, "--window"},
		{[]string{"--window", "tumbling:0s"}, "--window"},
		{[]string{"--window", "fixed:10s"}, "--window"},
		{[]string{"--window", "hopping:10s"}, "--window"},
		{[]string{"--window", "hopping:10s,1m"}, "--window"},
		{[]string{"--window", "tumbling:10s", "--agg", "median:x"}, "--agg"},
		{[]string{"--window", "tumbling:10s", "--agg", "sum"}, "--agg"},
		{[]string{"--window", "tumbling:10s", "--agg", "count,sum:x"}, "once per aggregate"},
		{[]string{"--window", "tumbling:10s", "--agg", "count", "--agg", "count"}, "given twice"},
		{[]string{"--window", "tumbling:10s", "--key", "user"}, "--key"},
		{[]string{"--window", "tumbling:10s", "--key", "field:"}, "--key"},
		{[]string{"--window", "tumbling:10s", "--time", "now"}, "--time"},
		{[]string{"--window", "tumbling:10s", "--emit", "never"}, "--emit"},
		{[]string{"--window", "tumbling:10s", "--grace", "-1s"}, "--grace"},
		{[]string{"--window", "tumbling:10s", "--progress", "-1s"}, "--progress"},
		{[]string{"--window", "tumbling:10s", "--bootstrap", " , "}, "--bootstrap"},
		{[]string{"--window", "tumbling:10s", "--app", " "}, "--app"},
		{[]string{"--window", "tumbling:10s", "--grace", "soon"}, "--grace"},
		{[]string{}, "--window"},
	} {
		_, err := parseStream(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one about %s", tc.args, err, tc.want)
		}
	}
}

func TestStreamProgress(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	p := &streamProgress{app: "demo", w: &out, start: start}
	p.update(streams.Stats{In: 12345, Emitted: 42, Late: 3, Lag: 1500, Tasks: 3, Commits: 17})
	p.tick(start.Add(time.Second))
	p.update(streams.Stats{In: 22345, Emitted: 50, Late: 3, Tasks: 3, Commits: 27, Aborts: 1})
	p.tick(start.Add(3 * time.Second))
	want := "stream demo: 12,345 in (12,345/s), 42 results emitted, 3 late dropped, 0 invalid, lag 1,500, 3 partitions, 17 commits\n" +
		"stream demo: 22,345 in (5,000/s), 50 results emitted, 3 late dropped, 0 invalid, lag 0, 3 partitions, 27 commits, 1 aborted\n"
	if out.String() != want {
		t.Fatalf("progress lines\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	p.tty = true
	p.tick(start.Add(4 * time.Second))
	p.Run(nil, zerolog.InfoLevel, "a log line")
	p.tick(start.Add(5 * time.Second))
	p.finish(nil)
	got := out.String()
	if strings.Count(got, "\r\033[K") != 4 || strings.Count(got, "\n") != 1 || !strings.Contains(got, "stream demo: stopped after ") ||
		!strings.HasSuffix(got, "27 commits, 1 aborted\n") {
		t.Fatalf("terminal output %q", got)
	}

	out.Reset()
	q := &streamProgress{app: "demo", w: &out, start: start}
	q.finish(errors.New("failed"))
	if out.Len() != 0 {
		t.Fatalf("summary after a failure with nothing done: %q", out.String())
	}
}
