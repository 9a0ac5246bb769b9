package bench

import (
	"fmt"
	"time"
)

// Preset is a named workload, and for the presets that need one, the
// local cluster and the faults it runs with.
type Preset struct {
	Name     string
	Workload Workload
	// Cluster is the number of local brokers the preset starts when no
	// --brokers or --cluster is given (0: it runs against --brokers).
	Cluster int
	// Faults is a fault schedule (ParseFaults syntax); Chaos asks for a
	// random schedule over ChaosDuration instead.
	Faults        string
	Chaos         bool
	ChaosDuration time.Duration
	// Search runs the rate search instead of a fixed rate.
	Search bool
}

// PresetNames lists the presets.
var PresetNames = []string{"seed", "throughput", "latency", "chaos"}

// SeedFaults is the seed workload's schedule: the leader of the one
// partition killed and restarted, then a follower.
const SeedFaults = "leader-kill@10s,leader-restart@20s,follower-kill@25s,follower-restart@32s"

// PresetFor returns the named preset, built on base (the defaults and
// the brokers).
func PresetFor(name string, base Workload) (Preset, error) {
	w := base
	p := Preset{Name: name}
	switch name {
	case "seed":
		// The original workload: one partition, group "bench", 40 s at
		// 100 records/s, leader and then follower killed and restarted;
		// it must end with no acknowledged record lost.
		w.Partitions, w.Replication, w.Group = 1, 3, "bench"
		w.Rate, w.Duration, w.Warmup = 100, 40*time.Second, 0
		w.RecordSize = 100
		p.Cluster, p.Faults = 4, SeedFaults
	case "throughput":
		// As fast as the producers go: 1 KiB records, 6 partitions, 3
		// replicas.
		w.Partitions, w.Replication = 6, 3
		w.Rate, w.Duration, w.Warmup = 0, 60*time.Second, 10*time.Second
		w.RecordSize, w.Producers, w.Consumers = 1024, 2, 2
		w.MaxBuffered = 100_000
	case "latency":
		// A fixed moderate rate, well under capacity, for percentiles.
		w.Partitions, w.Replication = 6, 3
		w.Rate, w.Duration, w.Warmup = 5000, 60*time.Second, 10*time.Second
		w.RecordSize = 1024
	case "chaos":
		// Random faults of every kind for a few minutes at a steady rate;
		// the audit must be clean.
		w.Partitions, w.Replication = 3, 3
		w.Rate, w.Duration, w.Warmup = 500, 3*time.Minute, 0
		w.RecordSize = 256
		p.Cluster, p.Chaos, p.ChaosDuration = 4, true, 3*time.Minute-20*time.Second
	default:
		return Preset{}, fmt.Errorf("bench: preset %q: want one of %v", name, PresetNames)
	}
	p.Workload = w
	return p, nil
}
