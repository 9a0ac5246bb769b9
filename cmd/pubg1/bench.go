package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/pubg1/pubg1/bench"
)

type benchCmd struct {
	Run     benchRunCmd     `cmd:"" default:"withargs" help:"Run a workload against --brokers or a local --cluster (the default)."`
	Limits  benchLimitsCmd  `cmd:"" help:"Measure the machine's ceilings: synced sequential disk writes and loopback TCP bandwidth."`
	Compare benchCompareCmd `cmd:"" help:"Run the same workload against two clusters in alternating rounds and compare them side by side."`
}

// workloadFlags are the settings of a workload; unset ones come from the
// preset, or else from bench.DefaultWorkload.
type workloadFlags struct {
	Preset         string         `enum:",seed,throughput,latency,chaos" default:"" help:"Start from a preset workload: seed, throughput, latency or chaos (flags given override it)."`
	Topic          string         `help:"Reuse this topic (created if missing); only this run's records count. Default: a fresh topic per run."`
	Partitions     *int32         `help:"Partitions of the topic (default 6)."`
	Replication    *int16         `help:"Replication factor of the topic (default: the broker's)."`
	Rate           string         `help:"Offered load in records/s, open loop; \"max\" (or 0) as fast as possible; \"search\" finds the highest sustained rate (default 1000)."`
	Duration       *time.Duration `help:"How long the producers run (default 30s)."`
	Warmup         *time.Duration `help:"First part of the duration left out of the figures (default 5s)."`
	Size           *int           `help:"Record size in bytes (default 1024)."`
	SizeDist       string         `name:"size-dist" enum:",fixed,uniform,exp" default:"" help:"Record size distribution: fixed, uniform (size/2 to 3·size/2) or exp (mean size)."`
	Keys           string         `enum:",none,uniform,zipf" default:"" help:"Record keys: none, uniform or zipf."`
	KeySpace       *int           `name:"key-space" help:"Distinct keys (default 1000)."`
	ZipfS          *float64       `name:"zipf-s" help:"Zipf exponent, more than 1 (default 1.1)."`
	Acks           *int16         `help:"Produce acks: -1 (all), 1 or 0 (default -1)."`
	Compression    string         `enum:",none,gzip,snappy,lz4,zstd" default:"" help:"Producer compression."`
	Idempotent     *bool          `negatable:"" help:"Idempotent producer (default on with acks=-1)."`
	Producers      *int           `help:"Producer clients (default 1)."`
	Consumers      *int           `help:"Consumer clients in the group (default 1)."`
	Group          string         `help:"Consumer group (default: one per run)."`
	Linger         *time.Duration `help:"Producer linger (negative: franz-go's default)."`
	MetadataMinAge *time.Duration `name:"metadata-min-age" help:"Least time between two metadata refreshes of a client, which bounds how soon it learns a new leader (default 250ms; negative: franz-go's default, 5s)."`
	RequestTimeout *time.Duration `name:"request-timeout" help:"How long a client waits for a response before it retries, e.g. 1s: franz-go's produce request timeout and request timeout overhead (default: franz-go's, 10s each; a frozen leader's clients wait that long)."`
	ProduceTimeout *time.Duration `name:"produce-timeout" help:"franz-go's produce request timeout instead of --request-timeout's, e.g. 1.5s: a produce waits this plus --request-timeout, other requests --request-timeout."`
	MaxBuffered    *int           `name:"max-buffered" help:"Records in flight per producer (default 10000)."`
	Backlog        string         `help:"Build this much unread data first (e.g. 1GB), then measure how fast the consumers drain it while producing."`
	DrainTimeout   *time.Duration `name:"drain-timeout" help:"Bound on flushing, healing and draining at the end (default 2m)."`
	Delivery       *time.Duration `name:"delivery-timeout" help:"How long a record may wait for its acknowledgement, retries included, before it fails (default 60s)."`
	Seed           *int64         `help:"Seed of the record sizes and keys, and of --chaos (default 1)."`
	Label          string         `help:"Name of the system under test in the report (the protocol does not tell)."`
}

// workload builds the workload for brokers.
func (f *workloadFlags) workload(brokers []string) (bench.Workload, bench.Preset, error) {
	w := bench.DefaultWorkload()
	w.Brokers = brokers
	p := bench.Preset{Workload: w}
	if f.Preset != "" {
		var err error
		if p, err = bench.PresetFor(f.Preset, w); err != nil {
			return w, p, err
		}
		w = p.Workload
	}
	set := func(dst any, src any) {
		switch d := dst.(type) {
		case *int32:
			if v := src.(*int32); v != nil {
				*d = *v
			}
		case *int16:
			if v := src.(*int16); v != nil {
				*d = *v
			}
		case *int:
			if v := src.(*int); v != nil {
				*d = *v
			}
		case *int64:
			if v := src.(*int64); v != nil {
				*d = *v
			}
		case *float64:
			if v := src.(*float64); v != nil {
				*d = *v
			}
		case *bool:
			if v := src.(*bool); v != nil {
				*d = *v
			}
		case *time.Duration:
			if v := src.(*time.Duration); v != nil {
				*d = *v
			}
		case *string:
			if v := src.(string); v != "" {
				*d = v
			}
		}
	}
	set(&w.Topic, f.Topic)
	set(&w.Partitions, f.Partitions)
	set(&w.Replication, f.Replication)
	set(&w.Duration, f.Duration)
	set(&w.Warmup, f.Warmup)
	set(&w.RecordSize, f.Size)
	set(&w.SizeDist, f.SizeDist)
	set(&w.Keys, f.Keys)
	set(&w.KeySpace, f.KeySpace)
	set(&w.ZipfS, f.ZipfS)
	set(&w.Acks, f.Acks)
	set(&w.Compression, f.Compression)
	set(&w.Producers, f.Producers)
	set(&w.Consumers, f.Consumers)
	set(&w.Group, f.Group)
	set(&w.Linger, f.Linger)
	set(&w.MetadataMinAge, f.MetadataMinAge)
	set(&w.RequestTimeout, f.RequestTimeout)
	set(&w.ProduceTimeout, f.ProduceTimeout)
	set(&w.MaxBuffered, f.MaxBuffered)
	set(&w.DrainTimeout, f.DrainTimeout)
	set(&w.DeliveryTimeout, f.Delivery)
	set(&w.Seed, f.Seed)
	set(&w.Label, f.Label)
	if f.Acks != nil && *f.Acks != -1 && f.Idempotent == nil {
		w.Idempotent = false
	}
	set(&w.Idempotent, f.Idempotent)
	switch r := strings.TrimSpace(f.Rate); r {
	case "":
	case "search":
		p.Search = true
	case "max":
		w.Rate = 0
	default:
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v < 0 {
			return w, p, fmt.Errorf("--rate %q: want records/s, \"max\" or \"search\"", r)
		}
		w.Rate = v
	}
	if f.Backlog != "" {
		n, err := humanize.ParseBytes(f.Backlog)
		if err != nil {
			return w, p, fmt.Errorf("--backlog %q: %w", f.Backlog, err)
		}
		w.Backlog = int64(n)
	}
	if w.Duration <= w.Warmup && f.Warmup == nil {
		w.Warmup = w.Duration / 5
	}
	return w, p, w.Validate()
}

type benchRunCmd struct {
	workloadFlags
	Brokers       string         `default:"127.0.0.1:9092" env:"PUBG1_BENCH_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Cluster       int            `help:"Start a local PubG1 cluster of this many brokers (this binary) instead of using --brokers."`
	Data          string         `help:"Data directory of the local cluster (default: a temporary directory, removed afterwards)."`
	Netns         bool           `help:"Put each local broker in its own network namespace (root, Linux), for network cuts."`
	Faults        string         `help:"Fault schedule for the local cluster, e.g. leader-kill@10s,leader-restart@20s,follower-kill@25s."`
	Chaos         bool           `help:"Inject random faults into the local cluster, drawn from --seed."`
	ChaosDuration *time.Duration `name:"chaos-duration" help:"How long --chaos injects faults (default: the duration less 10s)."`
	Search        bool           `help:"Find the highest rate the cluster sustains (same as --rate search)."`
	SearchStart   float64        `name:"search-start" default:"1000" help:"First rate of the search."`
	SearchStep    time.Duration  `name:"search-step" default:"10s" help:"How long the search holds each rate."`
	SearchSteps   int            `name:"search-steps" default:"10" help:"Most rates the search tries."`
	Out           string         `default:"." help:"Directory for the JSON report and the plots."`
	NoPlots       bool           `name:"no-plots" help:"Write only the JSON report."`
	Limits        string         `help:"Relate the results to the ceilings in this file (from pubg1 bench limits --out)."`
	MeasureLimits bool           `name:"measure-limits" help:"Measure the ceilings first (a few seconds) and relate the results to them."`
	Quiet         bool           `help:"No progress line."`
}

func benchContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func (c *benchRunCmd) Run() error {
	ctx, stop := benchContext()
	defer stop()
	w, preset, err := c.workload(strings.Split(c.Brokers, ","))
	if err != nil {
		return err
	}
	log := benchLogger()
	opt := bench.RunOptions{Log: log}
	if !c.Quiet {
		opt.Progress, opt.TTY = os.Stderr, isTerminal(os.Stderr)
	}
	if opt.Limits, err = c.limits(ctx); err != nil {
		return err
	}
	local := bench.LocalCluster{Brokers: c.Cluster, DataDir: c.Data, Netns: c.Netns, Faults: c.Faults, Chaos: c.Chaos, Seed: w.Seed}
	if local.Brokers == 0 && preset.Cluster > 0 && !flagGiven("--brokers") && os.Getenv("PUBG1_BENCH_BROKERS") == "" {
		local.Brokers = preset.Cluster
	}
	if local.Faults == "" && !local.Chaos {
		local.Faults, local.Chaos = preset.Faults, preset.Chaos
	}
	// Chaos leaves the last part of the run quiet, so that the rate
	// recovers before the end.
	local.ChaosDuration = max(w.Duration-10*time.Second, w.Duration/2)
	if preset.ChaosDuration > 0 {
		local.ChaosDuration = min(local.ChaosDuration, preset.ChaosDuration)
	}
	if c.ChaosDuration != nil {
		local.ChaosDuration = *c.ChaosDuration
	}
	if local.Brokers > 0 && local.Chaos && !local.Netns {
		fmt.Fprintln(os.Stderr, "chaos without network cuts; add --netns (root, Linux) to include leader-isolate, follower-isolate, split and bridge")
	}
	if local.Brokers == 0 && (preset.Faults != "" || preset.Chaos) {
		fmt.Fprintf(os.Stderr, "the %s preset's faults need a local cluster (--cluster N); running without faults against %s\n", preset.Name, c.Brokers)
	}
	search := c.Search || preset.Search
	runOnce := func(ctx context.Context, w bench.Workload, opt bench.RunOptions) (*bench.Report, error) {
		if !search {
			return bench.Run(ctx, w, opt)
		}
		sc := bench.SearchConfig{Start: c.SearchStart, Step: c.SearchStep, MaxSteps: c.SearchSteps, Precision: 0.05}
		res, rep, err := bench.Search(ctx, w, sc, opt)
		if rep != nil {
			rep.Search = res
		}
		if res != nil {
			fmt.Fprintf(os.Stdout, "search: highest sustained rate %.0f records/s (%s)\n", res.Sustained, bench.SearchCriterion)
		}
		return rep, err
	}
	var rep *bench.Report
	if local.Brokers > 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the pubg1 binary: %w", err)
		}
		local.Binary = exe
		rep, err = bench.WithLocalCluster(ctx, local, w, opt, runOnce)
		if rep == nil && err != nil {
			return err
		}
		return c.finish(rep, preset, err)
	}
	if c.Faults != "" || c.Chaos || c.Netns {
		return errors.New("--faults, --chaos and --netns need a local cluster (--cluster N)")
	}
	rep, err = runOnce(ctx, w, opt)
	if rep == nil {
		return err
	}
	return c.finish(rep, preset, err)
}

// finish writes the report's files and summary, and passes on the run's
// error (an audit failure makes the command fail after the files are
// written).
func (c *benchRunCmd) finish(rep *bench.Report, preset bench.Preset, runErr error) error {
	rep.Preset = preset.Name
	prefix := "pubg1-bench-" + rep.RunID
	if preset.Name != "" {
		prefix = "pubg1-bench-" + preset.Name + "-" + rep.RunID
	}
	rep.WriteSummary(os.Stdout)
	var files []string
	var err error
	if c.NoPlots {
		path := c.Out + "/" + prefix + ".json"
		if err = os.MkdirAll(c.Out, 0o755); err == nil {
			err = rep.WriteJSON(path)
		}
		files = []string{path}
	} else {
		files, err = rep.WriteFiles(c.Out, prefix)
	}
	for _, f := range files {
		fmt.Fprintf(os.Stdout, "wrote %s\n", f)
	}
	return errors.Join(runErr, err)
}

func (c *benchRunCmd) limits(ctx context.Context) (*bench.Limits, error) {
	switch {
	case c.Limits != "":
		return bench.ReadLimits(c.Limits)
	case c.MeasureLimits:
		dir := c.Data
		if dir == "" {
			dir = os.TempDir()
		}
		l, err := bench.MeasureLimits(ctx, bench.DefaultLimitsConfig(dir))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "limits: synced disk writes %.0f MB/s, loopback %.0f MB/s\n", l.DiskMBPerSec, l.LoopbackMBPerSec)
		return l, nil
	}
	return nil, nil
}

// flagGiven reports whether the command line names the flag.
func flagGiven(name string) bool {
	for _, a := range os.Args[1:] {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

type benchLimitsCmd struct {
	Dir  string        `default:"." help:"A directory on the disk to measure (a temporary file is written there and removed)."`
	Time time.Duration `default:"3s" help:"How long each measurement runs."`
	Size string        `default:"512MiB" help:"Most bytes written to the disk."`
	Out  string        `help:"Also write the limits as JSON to this file, for --limits."`
}

func (c *benchLimitsCmd) Run() error {
	ctx, stop := benchContext()
	defer stop()
	n, err := humanize.ParseBytes(c.Size)
	if err != nil {
		return fmt.Errorf("--size %q: %w", c.Size, err)
	}
	cfg := bench.DefaultLimitsConfig(c.Dir)
	cfg.Time, cfg.DiskBytes = c.Time, int64(n)
	l, err := bench.MeasureLimits(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "disk %s: %.0f MB/s synced sequential writes (%d KiB blocks, %.0f syncs/s)\n", l.DiskDir, l.DiskMBPerSec, l.DiskBlockBytes>>10, l.DiskSyncsPerSec)
	fmt.Fprintf(os.Stdout, "loopback TCP: %.0f MB/s\n", l.LoopbackMBPerSec)
	if c.Out != "" {
		if err := bench.WriteLimits(c.Out, l); err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "wrote %s\n", c.Out)
	}
	return nil
}

type benchCompareCmd struct {
	workloadFlags
	A      string `required:"" help:"Bootstrap brokers of the first cluster."`
	B      string `required:"" help:"Bootstrap brokers of the second cluster."`
	AName  string `name:"a-name" default:"A" help:"Name of the first cluster in the table and plots."`
	BName  string `name:"b-name" default:"B" help:"Name of the second cluster."`
	Rounds int    `default:"3" help:"Rounds per cluster, alternating A, B, A, B, ..."`
	Out    string `default:"." help:"Directory for the JSON and the plots."`
	Quiet  bool   `help:"No progress line."`
}

func (c *benchCompareCmd) Run() error {
	ctx, stop := benchContext()
	defer stop()
	w, _, err := c.workload(strings.Split(c.A, ","))
	if err != nil {
		return err
	}
	opt := bench.RunOptions{Log: benchLogger()}
	if !c.Quiet {
		opt.Progress, opt.TTY = os.Stderr, isTerminal(os.Stderr)
	}
	a := bench.Side{Name: c.AName, Bootstrap: strings.Split(c.A, ",")}
	b := bench.Side{Name: c.BName, Bootstrap: strings.Split(c.B, ",")}
	cmp, runErr := bench.Compare(ctx, w, a, b, c.Rounds, opt)
	if cmp == nil || len(cmp.Rows) == 0 {
		return runErr
	}
	cmp.WriteTable(os.Stdout)
	files, err := cmp.WriteFiles(c.Out, "pubg1-bench-compare")
	for _, f := range files {
		fmt.Fprintf(os.Stdout, "wrote %s\n", f)
	}
	return errors.Join(runErr, err)
}
