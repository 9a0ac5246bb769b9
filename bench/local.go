package bench

import (
	"context"
	"errors"
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
	Log     io.Writer // broker output; nil discards it
	// Faults is a schedule in ParseFaults syntax; Chaos draws a random one
	// from Seed over ChaosDuration instead.
	Faults        string
	Chaos         bool
	Seed          int64
	ChaosDuration time.Duration
}

// ErrNoLocalCluster is returned while the local cluster supervisor is not
// part of this build.
var ErrNoLocalCluster = errors.New("bench: starting a local cluster (--cluster, --faults, --chaos) is not available in this build; run against --brokers")

// WithLocalCluster starts the cluster, points the workload at it, runs fn
// with a fault source for the schedule, and stops the cluster.
func WithLocalCluster(ctx context.Context, lc LocalCluster, w Workload, opt RunOptions, fn func(context.Context, Workload, RunOptions) (*Report, error)) (*Report, error) {
	return nil, ErrNoLocalCluster
}
