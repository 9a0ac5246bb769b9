package bench

import (
	"context"
	"time"
)

// FaultKind names one fault the runner can inject into a local cluster.
type FaultKind string

// The fault kinds. A "leader" target is the broker leading the benchmarked
// partition at the moment of the fault; a "follower" one of its other
// replicas; a "controller" the metadata group's leader. Restarts and resumes act on the broker the matching kill or
// pause hit.
const (
	LeaderKill      FaultKind = "leader-kill"      // SIGKILL the partition leader
	LeaderRestart   FaultKind = "leader-restart"   // restart the killed leader
	FollowerKill    FaultKind = "follower-kill"    // SIGKILL a follower
	FollowerRestart FaultKind = "follower-restart" // restart the killed follower
	LeaderPause     FaultKind = "leader-pause"     // SIGSTOP the leader
	LeaderResume    FaultKind = "leader-resume"    // SIGCONT it
	FollowerPause   FaultKind = "follower-pause"   // SIGSTOP a follower
	FollowerResume  FaultKind = "follower-resume"  // SIGCONT it
	LeaderIsolate   FaultKind = "leader-isolate"   // cut the leader off from the other brokers (network namespaces; the client still reaches it)
	FollowerIsolate FaultKind = "follower-isolate" // cut a follower off from the other brokers
	// Split cuts the cluster in two: the leader with a minority (of five:
	// the leader and a broker that does not replicate the partition, so
	// that the leader loses its partition's majority) and the rest.
	Split FaultKind = "split"
	// Bridge cuts the cluster in two halves that both still reach one
	// broker, the bridge (of five: the leader and a broker outside the
	// partition; a broker outside the partition as the bridge; the two
	// followers).
	Bridge  FaultKind = "bridge"
	NetHeal FaultKind = "heal" // remove every network cut
	// The controller kinds hit the metadata group's leader of the moment
	// (the controller Metadata names), whatever partitions it leads.
	ControllerKill    FaultKind = "controller-kill"    // SIGKILL the controller
	ControllerRestart FaultKind = "controller-restart" // restart the killed controller
	ControllerPause   FaultKind = "controller-pause"   // SIGSTOP the controller
	ControllerResume  FaultKind = "controller-resume"  // SIGCONT it
	ControllerIsolate FaultKind = "controller-isolate" // cut the controller off from the other brokers
)

// Fault is one scheduled fault, At after the start of the measured phase.
type Fault struct {
	At   time.Duration `json:"at_ns"`
	Kind FaultKind     `json:"kind"`
}

// FaultEvent is a fault as it happened: when, what, which broker (node ID),
// and an error if it could not be injected; and the faults in effect
// after it: the brokers killed or paused, and the broker pairs cut apart
// (lower node ID first).
type FaultEvent struct {
	At     time.Time  `json:"at"`
	Kind   FaultKind  `json:"kind"`
	Broker int32      `json:"broker"`
	Detail string     `json:"detail,omitempty"`
	Err    string     `json:"error,omitempty"`
	Down   []int32    `json:"down,omitempty"`
	Cuts   [][2]int32 `json:"cuts,omitempty"`
}

// FaultSource injects faults while a workload runs. Run injects its
// schedule relative to start, sends each event on events as it happens, and
// returns once the schedule is done and the cluster is whole again (killed
// brokers restarted, paused ones resumed, cuts healed), or when ctx ends
// (it heals the cluster then too). Current describes the fault in effect,
// for the progress line ("" when none).
type FaultSource interface {
	Run(ctx context.Context, start time.Time, events chan<- FaultEvent) error
	Current() string
}
