package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	good := []struct {
		spec string
		want []Fault
	}{
		{"", nil},
		{"  ", nil},
		{"leader-kill@10s,leader-restart@20s,follower-kill@25s,follower-restart@30s", []Fault{
			{10 * time.Second, LeaderKill}, {20 * time.Second, LeaderRestart},
			{25 * time.Second, FollowerKill}, {30 * time.Second, FollowerRestart}}},
		// Sorted by time, given order kept among equal times.
		{" leader-resume@2s , leader-pause@1s,follower-pause@1s,follower-resume@1500ms", []Fault{
			{time.Second, LeaderPause}, {time.Second, FollowerPause},
			{1500 * time.Millisecond, FollowerResume}, {2 * time.Second, LeaderResume}}},
		{"leader-isolate@0s,follower-isolate@1s,heal@2s,follower-isolate@3s,heal@4s", []Fault{
			{0, LeaderIsolate}, {time.Second, FollowerIsolate}, {2 * time.Second, NetHeal},
			{3 * time.Second, FollowerIsolate}, {4 * time.Second, NetHeal}}},
		{"split@1s,heal@2s,bridge@3s,heal@4s", []Fault{
			{time.Second, Split}, {2 * time.Second, NetHeal},
			{3 * time.Second, Bridge}, {4 * time.Second, NetHeal}}},
		// Two kills outstanding; restarts take the oldest first.
		{"follower-kill@1s,follower-kill@2s,follower-restart@3s,follower-restart@4s", []Fault{
			{time.Second, FollowerKill}, {2 * time.Second, FollowerKill},
			{3 * time.Second, FollowerRestart}, {4 * time.Second, FollowerRestart}}},
		// A kill left in effect is allowed: the injector heals at the end.
		{"leader-kill@1m", []Fault{{time.Minute, LeaderKill}}},
	}
	for _, c := range good {
		got, err := ParseFaults(c.spec)
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", c.spec, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("ParseFaults(%q) = %v, want %v", c.spec, got, c.want)
		}
		if len(got) > 0 {
			again, err := ParseFaults(FormatFaults(got))
			if err != nil || !slices.Equal(again, got) {
				t.Errorf("ParseFaults(FormatFaults(%v)) = %v, %v", got, again, err)
			}
		}
	}
	bad := []struct{ spec, want string }{
		{"leader-kil@10s", `unknown kind "leader-kil"`},
		{"leader-kill", "want KIND@DELAY"},
		{"leader-kill@", "bad delay"},
		{"leader-kill@10", "bad delay"},
		{"leader-kill@ten", "bad delay"},
		{"leader-kill@-1s", "negative delay"},
		{"leader-kill@1s,,leader-restart@2s", "want KIND@DELAY"},
		{"leader-restart@5s", "no leader-kill before it"},
		{"leader-restart@5s,leader-kill@10s", "no leader-kill before it"},
		{"follower-kill@5s,leader-restart@10s", "no leader-kill before it"},
		{"leader-kill@1s,leader-restart@2s,leader-restart@3s", "leader-restart@3s: no leader-kill"},
		{"follower-resume@1s", "no follower-pause before it"},
		{"leader-kill@1s,leader-resume@2s", "no leader-pause before it"},
		{"heal@1s", "no isolate, split or bridge"},
		{"controller-resume@1s,controller-pause@2s", "no controller-pause before it"},
		{"split@1s,heal@2s,heal@3s", "heal@3s"},
		{"leader-isolate@1s,heal@2s,heal@3s", "heal@3s"},
	}
	for _, c := range bad {
		got, err := ParseFaults(c.spec)
		if err == nil {
			t.Errorf("ParseFaults(%q) = %v, want an error", c.spec, got)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFaults(%q): %v, want it to say %q", c.spec, err, c.want)
		}
	}
}

// checkSchedule checks that a chaos schedule is well formed: in time
// order, within duration, one fault in effect at a time and each undone
// by its own kind.
func checkSchedule(t *testing.T, s []Fault, duration time.Duration, netns bool) {
	t.Helper()
	if len(s)%2 != 0 {
		t.Fatalf("odd number of faults: %v", s)
	}
	undo := map[FaultKind]FaultKind{}
	for _, p := range chaosPairs {
		undo[p[0]] = p[1]
	}
	var prev time.Duration
	for i := 0; i < len(s); i += 2 {
		f, u := s[i], s[i+1]
		want, ok := undo[f.Kind]
		if !ok || u.Kind != want {
			t.Fatalf("fault %d: %v followed by %v", i, f, u)
		}
		if f.Kind.NeedsNetns() && !netns {
			t.Fatalf("fault %d: %v without netns", i, f)
		}
		if f.At <= prev && i > 0 || u.At <= f.At || u.At > duration {
			t.Fatalf("faults %d-%d out of order or outside %v: %v %v after %v", i, i+1, duration, f, u, prev)
		}
		prev = u.At
	}
	if _, err := ParseFaults(FormatFaults(s)); err != nil {
		t.Fatalf("schedule does not parse back: %v", err)
	}
}

func TestChaosSchedule(t *testing.T) {
	for _, netns := range []bool{false, true} {
		kinds := chaosLocalPairs()
		if netns {
			kinds = len(chaosPairs)
		}
		for seed := int64(1); seed <= 20; seed++ {
			for _, d := range []time.Duration{0, 3 * time.Second, time.Minute, 5 * time.Minute} {
				s := ChaosSchedule(seed, d, netns)
				if !slices.Equal(s, ChaosSchedule(seed, d, netns)) {
					t.Fatalf("seed %d %v: two different schedules", seed, d)
				}
				checkSchedule(t, s, d, netns)
				if d >= time.Minute {
					seen := map[FaultKind]bool{}
					for _, f := range s {
						seen[f.Kind] = true
					}
					for _, p := range chaosPairs[:kinds] {
						if !seen[p[0]] {
							t.Fatalf("seed %d %v netns %v: no %s: %v", seed, d, netns, p[0], s)
						}
					}
				}
			}
		}
		if slices.Equal(ChaosSchedule(1, time.Minute, netns), ChaosSchedule(2, time.Minute, netns)) {
			t.Errorf("seeds 1 and 2 give the same schedule")
		}
	}
	if s := ChaosSchedule(7, 3*time.Minute, false); len(s) == 0 {
		t.Fatal("no faults in three minutes")
	} else {
		t.Logf("seed 7, 3m: %s", FormatFaults(s))
	}
}
