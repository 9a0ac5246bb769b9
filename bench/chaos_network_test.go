package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// networkSchedule holds each fault for 8 s, several times the brokers'
// detection time (1.5 s), with 6 s of quiet between faults.
const networkSchedule = "leader-isolate@6s,heal@14s," +
	"split@20s,heal@28s," +
	"bridge@34s,heal@42s," +
	"leader-kill@48s,leader-restart@56s," +
	"leader-pause@62s,leader-resume@70s," +
	"controller-pause@76s,controller-resume@84s," +
	"controller-isolate@90s,heal@98s"

// TestChaosNetwork runs five brokers, each in its own network namespace on
// a bridge, with a topic of ten partitions and three replicas, and injects
// one fault after another, aimed at partition 0's leader of the moment: a
// leader cut off from the other brokers (clients still reach it), a split
// (the leader and a broker outside its partition against the other three),
// a bridge (two halves that both reach one broker), a kill (SIGKILL, then a
// restart) and a freeze (SIGSTOP, then SIGCONT); then a freeze and a cut
// aimed at the controller (the metadata group's leader). Two idempotent acks=all
// producers write 1,000 records/s with keys spread over every partition
// while two consumers of one group read them; the clients give up on a
// request after 1 s (a produce after 2 s) and retry.
//
// It fails on any safety violation the audit finds: an acknowledged record
// lost, duplicated, read at another offset than acknowledged, two records
// at one offset, a producer's records out of order, or a consumer's poll
// that skipped a record or went backwards. For every fault it reports the
// longest time any partition waited for an acknowledgement, overall and
// among the partitions the fault left a connected majority; timings are
// reported, never asserted.
//
// It needs root on Linux (network namespaces), as the README's test
// command has in CI. PUBG1_BROKER_BINARY runs another pubg1 build as the
// brokers, to compare builds with the same test.
func TestChaosNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five brokers for about two minutes")
	}
	if err := netnsSupported(); err != nil {
		t.Skipf("needs network namespaces (root on Linux): %v", err)
	}
	lc := LocalCluster{
		Binary: pubg1Binary(t), Brokers: 5, Netns: true,
		Args:   []string{"--log-level", "warn", "--group-initial-rebalance-delay", "0s"},
		Faults: networkSchedule,
	}
	w := DefaultWorkload()
	w.Partitions, w.Replication = 10, 3
	w.Rate, w.RecordSize = 1000, 100
	w.Producers, w.Consumers = 2, 2
	w.Acks, w.Idempotent = -1, true
	w.Keys, w.KeySpace = KeysUniform, 10000
	w.Duration, w.Warmup = 104*time.Second, 0
	w.MetadataMinAge = 250 * time.Millisecond
	// A frozen leader keeps its connections open: the clients give up on
	// a request after 1 s (2 s for a produce) rather than franz-go's 10 s
	// (20 s), so that the waits measure the brokers' failover.
	w.RequestTimeout = time.Second
	w.DeliveryTimeout = 60 * time.Second
	w.DrainTimeout = 90 * time.Second
	rep := runLocal(t, lc, w, waitTable)
	want, err := ParseFaults(networkSchedule)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []FaultKind
	for _, f := range rep.Faults {
		if f.Event.Err != "" {
			t.Errorf("%s at %.1f s failed: %s", f.Event.Kind, f.At, f.Event.Err)
		}
		kinds = append(kinds, f.Event.Kind)
	}
	var wantKinds []FaultKind
	for _, f := range want {
		wantKinds = append(wantKinds, f.Kind)
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("faults %v, want %v", kinds, wantKinds)
	}
	// Each network fault cut the cluster as it should.
	for _, f := range rep.Faults {
		if got, want := len(f.Event.Cuts), map[FaultKind]int{LeaderIsolate: 4, ControllerIsolate: 4, Split: 6, Bridge: 4}[f.Event.Kind]; got != want {
			t.Errorf("%s at %.1f s left %d broker pairs cut, want %d: %v", f.Event.Kind, f.At, got, want, f.Event.Cuts)
		}
	}
	a := &rep.Audit
	if !a.OK() || a.Duplicates != 0 || a.OutOfOrder != 0 || a.Acked == 0 || !rep.Drained {
		t.Fatalf("audit failed (idempotent producers: no duplicates or reordering either): %s; duplicates %d %v, out of order %d %v, acknowledged %d, drained %v",
			a.Problem(), a.Duplicates, a.DuplicateRecords, a.OutOfOrder, a.OutOfOrderRecords, a.Acked, rep.Drained)
	}
}

// waitTable lists, per fault event, the longest acknowledgement wait of
// any partition and of the partitions left a connected majority.
func waitTable(rep *Report) string {
	var b strings.Builder
	var parts []string
	for p := range int32(len(rep.Replicas)) {
		parts = append(parts, fmt.Sprintf("%d:%v", p, rep.Replicas[p]))
	}
	fmt.Fprintf(&b, "replicas %s\n", strings.Join(parts, " "))
	fmt.Fprintf(&b, "%-8s %-18s %-7s %-28s %s\n", "at", "event", "broker", "longest wait (partition)", "longest wait, connected majority")
	for _, f := range rep.Faults {
		kept := "-"
		if f.LongestWaitKeptMajority != nil {
			kept = fmt.Sprintf("%.2f s (%d of %d partitions)", *f.LongestWaitKeptMajority, len(f.KeptMajority), len(f.PartitionWaits))
		}
		fmt.Fprintf(&b, "%6.1f s %-18s %-7d %-28s %s\n", f.At, f.Event.Kind, f.Event.Broker,
			fmt.Sprintf("%.2f s (%d)", f.LongestWait, f.LongestWaitPartition), kept)
	}
	return b.String()
}
