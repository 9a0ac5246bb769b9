package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/pubg1/pubg1/streams"
	"github.com/rs/zerolog"
)

type streamCmd struct {
	Bootstrap      string        `default:"127.0.0.1:9092" aliases:"brokers" env:"PUBG1_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	In             string        `required:"" placeholder:"TOPIC" help:"Topic to read."`
	Out            string        `required:"" placeholder:"TOPIC" help:"Topic the results are written to: one JSON record per window and group key."`
	App            string        `required:"" placeholder:"ID" help:"Application ID: names the consumer group, the transactional IDs and the changelog topic (ID-changelog). Processors with the same ID share the input's partitions."`
	Window         string        `required:"" placeholder:"SPEC" help:"Window: tumbling:SIZE, hopping:SIZE,ADVANCE, sliding:SIZE or session:GAP (e.g. tumbling:10s, hopping:1m,10s)."`
	Agg            []string      `default:"count" sep:"none" placeholder:"SPEC" help:"Aggregate computed per window: count, sum:FIELD, min:FIELD, max:FIELD, avg:FIELD or count-distinct:FIELD of the JSON value; repeat the flag for several."`
	Key            string        `default:"key" help:"Group key: key (the record key) or field:NAME (a field of the JSON value)."`
	Time           string        `default:"timestamp" help:"Event time: timestamp (the record timestamp) or field:NAME (a field of the JSON value holding epoch milliseconds)."`
	Grace          time.Duration `default:"0s" help:"How far behind the stream time a record may be and still join a window that has not closed; later records are dropped as late."`
	Emit           string        `default:"close" help:"When results are written: close (once per window, when it closes) or update (also after every record that changes the window)."`
	StateDir       string        `name:"state-dir" placeholder:"DIR" help:"Directory of the local window store (default: pubg1-streams/ID)."`
	CommitInterval time.Duration `name:"commit-interval" default:"100ms" help:"How often results, window state and input offsets are committed, in one transaction."`
	Retention      time.Duration `default:"0s" help:"How long closed windows stay in the store and the changelog after they close (0: removed once emitted)."`
	Replication    int16         `name:"replication-factor" default:"-1" help:"Replication factor of the topics the processor creates (changelog, repartition, output); -1 for the brokers' default."`
	AtLeastOnce    bool          `name:"at-least-once" help:"No transactions: results and offsets are committed separately, so after a crash some results may be written twice."`
	Progress       time.Duration `default:"1s" help:"Interval of the progress line on stderr (0: no progress line)."`
}

// Validate checks the flag values while the command line is parsed, so
// that a malformed one is a usage error.
func (s *streamCmd) Validate() error {
	if s.In == "" || s.Out == "" || s.App == "" || s.Window == "" {
		return nil // kong reports the required flags that are missing
	}
	cfg, err := s.config(zerolog.Nop())
	if err != nil {
		return err
	}
	// Validate fills in defaults; the copy keeps cfg as the flags gave it.
	check := cfg
	return check.Validate()
}

// config is the processor's configuration as the flags give it.
func (s *streamCmd) config(log zerolog.Logger) (streams.Config, error) {
	cfg := streams.Config{
		AppID:             s.App,
		Input:             s.In,
		Output:            s.Out,
		Grace:             s.Grace,
		StateDir:          s.StateDir,
		CommitInterval:    s.CommitInterval,
		Retention:         s.Retention,
		AtLeastOnce:       s.AtLeastOnce,
		ReplicationFactor: s.Replication,
		Logger:            log,
	}
	for _, b := range strings.Split(s.Bootstrap, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	if len(cfg.Brokers) == 0 {
		return cfg, fmt.Errorf("--bootstrap %q: no broker address", s.Bootstrap)
	}
	for _, f := range []struct{ name, v string }{{"--in", s.In}, {"--out", s.Out}, {"--app", s.App}} {
		if strings.TrimSpace(f.v) == "" {
			return cfg, fmt.Errorf("%s: must not be empty", f.name)
		}
	}
	var err error
	if cfg.Window, err = streams.ParseWindow(s.Window); err != nil {
		return cfg, fmt.Errorf("--window: %w", err)
	}
	for _, spec := range s.Agg {
		a, err := streams.ParseAgg(spec)
		if err != nil {
			if strings.Contains(spec, ",") {
				return cfg, fmt.Errorf("--agg: %w (give --agg once per aggregate)", err)
			}
			return cfg, fmt.Errorf("--agg: %w", err)
		}
		cfg.Aggs = append(cfg.Aggs, a)
	}
	if cfg.Key, err = streams.ParseKey(s.Key); err != nil {
		return cfg, fmt.Errorf("--key: %w", err)
	}
	if cfg.Time, err = streams.ParseTime(s.Time); err != nil {
		return cfg, fmt.Errorf("--time: %w", err)
	}
	if cfg.Emit, err = streams.ParseEmit(s.Emit); err != nil {
		return cfg, fmt.Errorf("--emit: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--grace", s.Grace}, {"--commit-interval", s.CommitInterval}, {"--retention", s.Retention}, {"--progress", s.Progress}} {
		if d.v < 0 {
			return cfg, fmt.Errorf("%s %v: must not be negative", d.name, d.v)
		}
	}
	return cfg, nil
}

// Run processes the input until SIGINT or SIGTERM, then commits what it
// has and prints a summary.
func (s *streamCmd) Run(log zerolog.Logger) error {
	cfg, err := s.config(log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Once the processor is stopping, a second signal ends the process at
	// once; what it had not committed is processed again on restart.
	go func() {
		<-ctx.Done()
		stop()
	}()

	p := &streamProgress{app: s.App, w: os.Stderr, tty: isTerminal(os.Stderr), start: time.Now()}
	cfg.Progress = p.update
	var wg sync.WaitGroup
	progressCtx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	if s.Progress > 0 {
		if p.tty {
			cfg.Logger = cfg.Logger.Hook(p)
		}
		wg.Go(func() { p.run(progressCtx, s.Progress) })
	}
	err = streams.Run(ctx, cfg)
	stopProgress()
	wg.Wait()
	p.finish(err)
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.App, err)
	}
	return nil
}

// streamProgress keeps a processor's latest counters and prints them.
type streamProgress struct {
	app   string
	w     io.Writer
	tty   bool // redraw one line rather than print one per interval
	start time.Time

	mu     sync.Mutex
	stats  streams.Stats
	drawn  bool // a progress line is on the terminal without a newline
	lastIn int64
	lastAt time.Time
}

// update takes the counters after a commit.
func (p *streamProgress) update(st streams.Stats) {
	p.mu.Lock()
	p.stats = st
	p.mu.Unlock()
}

// run prints the progress line every interval until ctx ends.
func (p *streamProgress) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.tick(now)
		}
	}
}

// tick prints the counters with the input rate since the previous tick.
func (p *streamProgress) tick(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	since := p.lastAt
	if since.IsZero() {
		since = p.start
	}
	rate := perSecond(p.stats.In-p.lastIn, now.Sub(since))
	p.lastIn, p.lastAt = p.stats.In, now
	line := "stream " + p.app + ": " + statsText(p.stats, rate)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// Run clears the progress line before a log line is written over it; the
// next tick draws it again.
func (p *streamProgress) Run(*zerolog.Event, zerolog.Level, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// finish ends the progress line and prints the summary: always after a
// stop, after a failure only if there was something to count.
func (p *streamProgress) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	st := p.stats
	if err != nil && st.In == 0 && st.Commits == 0 {
		return
	}
	how := "stopped"
	if err != nil {
		how = "failed"
	}
	elapsed := time.Since(p.start)
	fmt.Fprintf(p.w, "stream %s: %s after %v: %s\n", p.app, how, elapsed.Round(time.Second), statsText(st, perSecond(st.In, elapsed)))
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// statsText is the counters as the progress and summary lines show them,
// rate being the records read per second.
func statsText(st streams.Stats, rate float64) string {
	s := fmt.Sprintf("%s in (%s/s), %s results emitted, %s late dropped, %s invalid, lag %s, %d partitions, %s commits",
		humanize.Comma(st.In), humanize.Comma(int64(rate+0.5)), humanize.Comma(st.Emitted), humanize.Comma(st.Late),
		humanize.Comma(st.Invalid), humanize.Comma(st.Lag), st.Tasks, humanize.Comma(st.Commits))
	if st.Aborts > 0 {
		s += fmt.Sprintf(", %s aborted", humanize.Comma(st.Aborts))
	}
	return s
}

var _ zerolog.Hook = (*streamProgress)(nil)
