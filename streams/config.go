// Package streams computes windowed aggregates over a Kafka topic with
// exactly-once results: a Kafka client (franz-go) that runs against PubG1
// or Apache Kafka alike.
//
// A processor consumes its input topic in a consumer group named by the
// application ID; each input partition is a task with its own stream time
// (the highest event time it has seen) and window state. Window state lives
// in a local Badger store, backed by a compacted changelog topic. Every
// commit interval one transaction carries the results, the changelog
// writes and the input offsets, so a processor killed at any moment, or
// restarted without its local store, resumes where the last transaction
// left off and emits what an uninterrupted run would have. Windows close
// on event time, never on wall-clock time.
package streams

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Emit says when results are written.
type Emit int

const (
	// EmitOnClose writes one result per window, when it closes (its end
	// plus the grace period is behind the stream time).
	EmitOnClose Emit = iota
	// EmitOnUpdate writes the window's result after every record that
	// changes it, and once more when it closes.
	EmitOnUpdate
)

// Config is a stream processor's configuration; Run checks it.
type Config struct {
	// Brokers are the bootstrap addresses.
	Brokers []string
	// AppID names the consumer group, the transactional IDs and the
	// changelog topic (AppID + "-changelog").
	AppID string
	// Input and Output are the topics read and written.
	Input, Output string
	// Key gives a record's group key; nil (or RecordKey()) groups by the
	// record key. With another Key, records are first written, keyed by their group key, to the
	// internal topic AppID + "-repartition" (in the same transactions), so
	// that each group key's records meet in one task wherever they came
	// from.
	Key KeyFunc
	// Time gives a record's event time; nil takes the record timestamp.
	Time TimeFunc
	// Window is the kind of window (Tumbling, Hopping, Sliding, Session).
	Window Window
	// Aggs are the aggregates computed per window; at least one.
	Aggs []Agg
	// Grace admits records that far behind the stream time into windows
	// that have not closed yet.
	Grace time.Duration
	// Emit says when results are written (default EmitOnClose).
	Emit Emit
	// StateDir holds the local state store (default
	// "./pubg1-streams/AppID").
	StateDir string
	// CommitInterval is how often a transaction is committed (default
	// 100 ms).
	CommitInterval time.Duration
	// Retention keeps closed windows in the store and the changelog that
	// long past their close before they are purged (default 0: purged
	// once emitted).
	Retention time.Duration
	// ReplicationFactor of the topics the processor creates (changelog,
	// repartition, output); 0 or -1 takes the brokers' default.
	ReplicationFactor int16
	// AtLeastOnce turns transactions off: results and offsets are
	// committed separately (a reference for benchmarks).
	AtLeastOnce bool
	// Progress, if set, is called with the counters after every commit,
	// from the goroutine that runs Run.
	Progress func(Stats)
	// Logger receives the processor's log.
	Logger zerolog.Logger
	// ClientOpts are added to the Kafka client's options.
	ClientOpts []kgo.Opt

	repartition bool // Key was given: records go through the repartition topic
}

// Stats are a processor's counters since it started.
type Stats struct {
	In      int64 // records read
	Emitted int64 // results written
	Late    int64 // records dropped because every window they fall in had closed
	Invalid int64 // records without a usable key, time or aggregated field
	Commits int64 // transactions committed
	Aborts  int64 // transactions aborted (a rebalance, or a failure)
	Lag     int64 // records behind the input's end at the last commit
	Tasks   int   // input partitions this processor owns
}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if cfg.AppID == "" {
		errs = append(errs, errors.New("no application ID"))
	}
	if cfg.Input == "" || cfg.Output == "" {
		errs = append(errs, errors.New("input and output topics are both needed"))
	}
	if cfg.Window.size <= 0 {
		errs = append(errs, errors.New("no window"))
	}
	if len(cfg.Aggs) == 0 {
		errs = append(errs, errors.New("no aggregate"))
	}
	names := make(map[string]bool)
	for _, a := range cfg.Aggs {
		if names[a.Name()] {
			errs = append(errs, fmt.Errorf("aggregate %s given twice", a.Name()))
		}
		names[a.Name()] = true
	}
	if cfg.Grace < 0 || cfg.Retention < 0 || cfg.CommitInterval < 0 {
		errs = append(errs, errors.New("grace, retention and commit interval cannot be negative"))
	}
	if cfg.Emit != EmitOnClose && cfg.Emit != EmitOnUpdate {
		errs = append(errs, fmt.Errorf("unknown emit mode %d", cfg.Emit))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	cfg.repartition = !isRecordKey(cfg.Key)
	if cfg.Key == nil {
		cfg.Key = RecordKey()
	}
	if cfg.Time == nil {
		cfg.Time = RecordTime()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "pubg1-streams/" + cfg.AppID
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 100 * time.Millisecond
	}
	return nil
}

// ChangelogTopic is the changelog topic of an application.
func ChangelogTopic(appID string) string { return appID + "-changelog" }

// RepartitionTopic is the topic an application that groups by something
// else than the record key writes its input to, keyed by group key.
func RepartitionTopic(appID string) string { return appID + "-repartition" }

// ParseEmit parses "close" or "update".
func ParseEmit(s string) (Emit, error) {
	switch s {
	case "close", "":
		return EmitOnClose, nil
	case "update":
		return EmitOnUpdate, nil
	}
	return 0, fmt.Errorf("streams: emit %q: want close or update", s)
}

// ParseWindow parses "tumbling:SIZE", "hopping:SIZE,ADVANCE",
// "sliding:SIZE" or "session:GAP", durations as time.ParseDuration takes
// them.
func ParseWindow(s string) (Window, error) {
	kind, args, _ := strings.Cut(s, ":")
	var ds []time.Duration
	for _, a := range strings.Split(args, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(a))
		if err != nil || d <= 0 {
			return Window{}, fmt.Errorf("streams: window %q: %q is not a positive duration", s, a)
		}
		ds = append(ds, d)
	}
	want := 1
	if kind == "hopping" {
		want = 2
	}
	if len(ds) != want {
		return Window{}, fmt.Errorf("streams: window %q: %s takes %d duration(s)", s, kind, want)
	}
	switch kind {
	case "tumbling":
		return Tumbling(ds[0]), nil
	case "hopping":
		if ds[1] > ds[0] {
			return Window{}, fmt.Errorf("streams: window %q: the advance exceeds the size", s)
		}
		return Hopping(ds[0], ds[1]), nil
	case "sliding":
		return Sliding(ds[0]), nil
	case "session":
		return Session(ds[0]), nil
	}
	return Window{}, fmt.Errorf("streams: window %q: kind %q is not tumbling, hopping, sliding or session", s, kind)
}

// ParseAgg parses "count", "sum:FIELD", "min:FIELD", "max:FIELD",
// "avg:FIELD" or "count-distinct:FIELD".
func ParseAgg(s string) (Agg, error) {
	kind, field, _ := strings.Cut(s, ":")
	switch kind {
	case "count":
		if field != "" {
			return Agg{}, fmt.Errorf("streams: aggregate %q: count takes no field", s)
		}
		return Count(), nil
	case "sum", "min", "max", "avg", "count-distinct":
		if field == "" {
			return Agg{}, fmt.Errorf("streams: aggregate %q: %s needs a JSON field (%s:FIELD)", s, kind, kind)
		}
		return Agg{kind: aggKinds[kind], field: field}, nil
	}
	return Agg{}, fmt.Errorf("streams: aggregate %q: not count, sum, min, max, avg or count-distinct", s)
}

// ParseKey parses "key" (the record key) or "field:NAME" (a JSON field).
func ParseKey(s string) (KeyFunc, error) {
	if s == "" || s == "key" {
		return RecordKey(), nil
	}
	if f, ok := strings.CutPrefix(s, "field:"); ok && f != "" {
		return JSONKey(f), nil
	}
	return nil, fmt.Errorf("streams: key %q: want key or field:NAME", s)
}

// ParseTime parses "timestamp" (the record timestamp) or "field:NAME" (a
// JSON field holding epoch milliseconds).
func ParseTime(s string) (TimeFunc, error) {
	if s == "" || s == "timestamp" {
		return RecordTime(), nil
	}
	if f, ok := strings.CutPrefix(s, "field:"); ok && f != "" {
		return JSONTime(f), nil
	}
	return nil, fmt.Errorf("streams: time %q: want timestamp or field:NAME", s)
}
