package bench

import (
	"math/rand/v2"
	"time"
)

// chaosPairs are the faults a chaos schedule draws from, each with the
// fault that undoes it; the kinds that need network namespaces come last.
var chaosPairs = [][2]FaultKind{
	{LeaderKill, LeaderRestart},
	{FollowerKill, FollowerRestart},
	{LeaderPause, LeaderResume},
	{FollowerPause, FollowerResume},
	{ControllerKill, ControllerRestart},
	{ControllerPause, ControllerResume},
	{LeaderIsolate, NetHeal},
	{ControllerIsolate, NetHeal},
	{FollowerIsolate, NetHeal},
	{Split, NetHeal},
	{Bridge, NetHeal},
}

// ChaosSchedule returns a random schedule of faults within duration,
// the same for the same seed. Faults come one at a time — each is undone
// (restart, resume, heal) before the next begins, so a cluster of three
// keeps its quorum — and in rounds that each use every kind once in a
// shuffled order, so a run long enough for one round sees every kind. A
// fault holds for, and is followed by a quiet gap of, one to one and a
// half times duration/(3×kinds+2), between 1 s and 20 s. The network
// kinds (isolate, split, bridge) are included only with netns.
func ChaosSchedule(seed int64, duration time.Duration, netns bool) []Fault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x70756267315f6368)) // "pubg1_ch"
	pairs := chaosPairs
	if !netns {
		pairs = pairs[:chaosLocalPairs()]
	}
	unit := duration / time.Duration(3*len(pairs)+2)
	unit = max(time.Second, min(unit, 20*time.Second))
	// jitter is unit to 1.5 unit, rounded to milliseconds.
	jitter := func() time.Duration {
		d := unit + time.Duration(rng.Int64N(int64(unit/2)+1))
		return d.Round(time.Millisecond)
	}
	var out []Fault
	t := jitter()
	for {
		order := rng.Perm(len(pairs))
		for _, k := range order {
			hold := jitter()
			if t+hold > duration {
				return out
			}
			out = append(out, Fault{At: t, Kind: pairs[k][0]}, Fault{At: t + hold, Kind: pairs[k][1]})
			t += hold + jitter()
		}
	}
}

// chaosLocalPairs counts the leading chaos pairs that need no network
// namespaces.
func chaosLocalPairs() int {
	n := 0
	for n < len(chaosPairs) && !chaosPairs[n][0].NeedsNetns() {
		n++
	}
	return n
}
