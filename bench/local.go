package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// LocalCluster describes a local PubG1 cluster for the runner to start
// and, optionally, faults to inject into it.
type LocalCluster struct {
	Binary  string    // the pubg1 binary
	Brokers int       // number of brokers
	DataDir string    // "" for a temporary directory, removed afterwards
	Netns   bool      // each broker in its own network namespace (root, Linux)
	Args    []string  // extra serve flags for every broker
	Log     io.Writer // broker output; nil keeps it for error reports only
	// Faults is a schedule in ParseFaults syntax; Chaos draws a random one
	// from Seed over ChaosDuration instead.
	Faults        string
	Chaos         bool
	Seed          int64
	ChaosDuration time.Duration
}

// Schedule is the fault schedule lc asks for.
func (lc *LocalCluster) Schedule() ([]Fault, error) {
	if lc.Chaos {
		if lc.Faults != "" {
			return nil, errors.New("bench: a fault schedule and chaos at once")
		}
		if lc.ChaosDuration <= 0 {
			return nil, fmt.Errorf("bench: chaos duration %v: want more than 0", lc.ChaosDuration)
		}
		return ChaosSchedule(lc.Seed, lc.ChaosDuration, lc.Netns), nil
	}
	return ParseFaults(lc.Faults)
}

// WithLocalCluster starts the cluster, points the workload at it, runs fn
// with a fault source for the schedule (aimed at partition 0 of the run's
// topic), and stops the cluster. The report records the cluster and the
// schedule.
func WithLocalCluster(ctx context.Context, lc LocalCluster, w Workload, opt RunOptions, fn func(context.Context, Workload, RunOptions) (*Report, error)) (*Report, error) {
	schedule, err := lc.Schedule()
	if err != nil {
		return nil, err
	}
	for _, f := range schedule {
		if f.At >= w.Duration {
			return nil, fmt.Errorf("bench: fault %s at %v falls after the run's %v", f.Kind, f.At, w.Duration)
		}
	}
	c, err := StartCluster(ctx, ClusterConfig{Binary: lc.Binary, Brokers: lc.Brokers, DataDir: lc.DataDir, Netns: lc.Netns, Args: lc.Args, Log: lc.Log})
	if err != nil {
		return nil, fmt.Errorf("bench: starting a local cluster of %d: %w", lc.Brokers, err)
	}
	w.Brokers = c.Bootstrap()
	if opt.Software == nil {
		opt.Software = LocalSoftware()
	}
	if len(schedule) > 0 {
		opt.FaultsFor = func(topic string) FaultSource {
			return NewInjector(c, nil, topic, 0, schedule, opt.Log)
		}
	}
	settings := &ClusterSettings{Brokers: lc.Brokers, DataDir: c.DataDir(), Netns: lc.Netns, Faults: schedule, Chaos: lc.Chaos, Seed: lc.Seed, Args: lc.Args}
	rep, runErr := fn(ctx, w, opt)
	if rep != nil {
		rep.Cluster = settings
	}
	if err := c.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("bench: stopping the local cluster: %w", err))
	}
	return rep, runErr
}
