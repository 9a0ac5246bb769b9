package bench

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

func TestSides(t *testing.T) {
	cases := []struct {
		brokers              int
		leader               int32
		replicas             []int32
		bridge               bool
		wantLeader, wantRest []int32
		wantBridge           int32
	}{
		// Five brokers: the leader takes a broker outside its partition
		// (so that it loses its partition's majority) for a split...
		{5, 3, []int32{3, 4, 5}, false, []int32{1, 3}, []int32{2, 4, 5}, 0},
		// ... and for a bridge, whose middle is the other one outside.
		{5, 3, []int32{3, 4, 5}, true, []int32{2, 3}, []int32{4, 5}, 1},
		{5, 1, []int32{5, 1, 2}, true, []int32{1, 4}, []int32{2, 5}, 3},
		// Three brokers: every broker is a replica.
		{3, 1, []int32{1, 2, 3}, false, []int32{1}, []int32{2, 3}, 0},
		{3, 2, []int32{1, 2, 3}, true, []int32{2}, []int32{3}, 1},
	}
	for _, c := range cases {
		i := &Injector{c: &Cluster{procs: make([]*Proc, c.brokers)}}
		l, m, r := i.sides(partitionView{leader: c.leader, replicas: c.replicas}, c.bridge)
		if !slices.Equal(l, c.wantLeader) || !slices.Equal(r, c.wantRest) || m != c.wantBridge {
			t.Errorf("%d brokers, leader %d of %v, bridge %v: %v | %d | %v, want %v | %d | %v",
				c.brokers, c.leader, c.replicas, c.bridge, l, m, r, c.wantLeader, c.wantBridge, c.wantRest)
		}
	}
}

// cutsBetween lists the pairs that cut every broker of a from every one
// of b, lower ID first.
func cutsBetween(a, b []int32) [][2]int32 {
	var out [][2]int32
	for _, x := range a {
		for _, y := range b {
			out = append(out, [2]int32{min(x, y), max(x, y)})
		}
	}
	return out
}

func TestKeptMajority(t *testing.T) {
	brokers := []int32{1, 2, 3, 4, 5}
	replicas := map[int32][]int32{0: {1, 2, 3}, 1: {2, 3, 4}, 2: {3, 4, 5}, 3: {4, 5, 1}, 4: {5, 1, 2}}
	cases := []struct {
		name string
		ev   FaultEvent
		want []int32
	}{
		{"none", FaultEvent{}, []int32{0, 1, 2, 3, 4}},
		{"kill", FaultEvent{Down: []int32{3}}, []int32{0, 1, 2, 3, 4}},
		{"two down", FaultEvent{Down: []int32{3, 4}}, []int32{0, 3, 4}},
		{"three down: no metadata majority", FaultEvent{Down: []int32{1, 2, 3}}, nil},
		{"isolate", FaultEvent{Cuts: cutsBetween([]int32{1}, []int32{2, 3, 4, 5})}, []int32{0, 1, 2, 3, 4}},
		// The minority side holds a majority of partition 0's replicas but
		// not of the brokers.
		{"split", FaultEvent{Cuts: cutsBetween([]int32{1, 2}, []int32{3, 4, 5})}, []int32{1, 2, 3}},
		// {1,3} | 2 | {4,5}: each half with the bridge is a majority.
		{"bridge", FaultEvent{Cuts: cutsBetween([]int32{1, 3}, []int32{4, 5})}, []int32{0, 1, 2, 3, 4}},
	}
	for _, c := range cases {
		got := keptMajority(c.ev, replicas, brokers)
		var ids []int32
		for p, ok := range got {
			if ok {
				ids = append(ids, p)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, ids, c.want)
		}
	}
}

func TestPartitionWaits(t *testing.T) {
	start := time.Unix(1000, 0)
	s := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	var acks []AckedRecord
	// Partition 0 acknowledged every 100 ms for 10 s but for 2.5-5.5 s;
	// partition 1 every 100 ms throughout; partition 2 never.
	for x := 0.0; x < 10; x += 0.1 {
		if x < 2.5 || x > 5.5 {
			acks = append(acks, AckedRecord{Partition: 0, AckedAt: s(x)})
		}
		acks = append(acks, AckedRecord{Partition: 1, AckedAt: s(x)})
	}
	reports := []FaultReport{
		{Event: FaultEvent{At: start.Add(s(2)), Kind: Split, Cuts: cutsBetween([]int32{1}, []int32{2, 3})}},
		{Event: FaultEvent{At: start.Add(s(6)), Kind: NetHeal}},
	}
	replicas := map[int32][]int32{0: {1, 2, 3}, 1: {1, 2, 3}, 2: {1, 2, 3}}
	partitionWaits(reports, start, acks, s(10), replicas, []int32{1, 2, 3})
	near := func(got, want float64) bool { return math.Abs(got-want) < 0.02 }
	split, heal := reports[0], reports[1]
	// From the split to the heal: partition 0 waited from 2.4 s to 5.6 s,
	// partition 2 the whole 4 s.
	if !near(split.PartitionWaits[0], 3.2) || !near(split.PartitionWaits[1], 0.1) || !near(split.PartitionWaits[2], 4) {
		t.Errorf("split waits %v", split.PartitionWaits)
	}
	if split.LongestWaitPartition != 2 || !near(split.LongestWait, 4) {
		t.Errorf("split longest %v in %d", split.LongestWait, split.LongestWaitPartition)
	}
	if !slices.Equal(split.KeptMajority, []int32{0, 1, 2}) || split.LongestWaitKeptMajority == nil || !near(*split.LongestWaitKeptMajority, 4) {
		t.Errorf("split kept %v, longest %v", split.KeptMajority, split.LongestWaitKeptMajority)
	}
	// After the heal, to the end of the run.
	if !near(heal.PartitionWaits[0], 0.1) || !near(heal.PartitionWaits[2], 4) {
		t.Errorf("heal waits %v", heal.PartitionWaits)
	}
	if got := fmt.Sprint(heal.KeptMajority); got != "[0 1 2]" {
		t.Errorf("heal kept %s", got)
	}
}
