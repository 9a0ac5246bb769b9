package bench

import (
	"strings"
	"testing"
	"time"
)

// history builds a clean run: n records of one producer on partition 0,
// acknowledged and consumed at offsets 0..n-1.
func history(n int) ([]AckedRecord, []ConsumedRecord) {
	var acked []AckedRecord
	var consumed []ConsumedRecord
	for i := range n {
		id := RecordID{Producer: 1, Seq: uint64(i)}
		acked = append(acked, AckedRecord{Partition: 0, Offset: int64(i), ID: id, AckedAt: time.Duration(i)})
		consumed = append(consumed, ConsumedRecord{Partition: 0, Offset: int64(i), ID: id})
	}
	return acked, consumed
}

func TestAuditClean(t *testing.T) {
	acked, consumed := history(100)
	// A redelivery after a rebalance is not a fault.
	consumed = append(consumed, consumed[10:20]...)
	a := Audit(acked, consumed)
	if !a.OK() || a.Lost+a.Duplicates+a.InconsistentOffsets+a.OutOfOrder != 0 || a.Redelivered != 10 || a.Distinct != 100 {
		t.Fatalf("clean history audited as %+v", a)
	}
	if a.Problem() != "" {
		t.Fatalf("problem %q", a.Problem())
	}
}

func TestAuditLoss(t *testing.T) {
	acked, consumed := history(100)
	consumed = append(consumed[:40], consumed[43:]...) // 40, 41, 42 never read
	a := Audit(acked, consumed)
	if a.OK() || a.Lost != 3 {
		t.Fatalf("lost %d, ok %v: %+v", a.Lost, a.OK(), a)
	}
	if !strings.Contains(a.Problem(), "p1#40 at 0/40") || len(a.LostRecords) != 3 {
		t.Fatalf("problem %q does not name the lost records", a.Problem())
	}
}

func TestAuditDuplicate(t *testing.T) {
	acked, consumed := history(100)
	// Record 5 written again at offset 100 (a retry that landed twice).
	consumed = append(consumed, ConsumedRecord{Partition: 0, Offset: 100, ID: RecordID{Producer: 1, Seq: 5}})
	a := Audit(acked, consumed)
	if !a.OK() || a.Duplicates != 1 || a.DuplicateRecords[0].ID.Seq != 5 {
		t.Fatalf("duplicates %d: %+v", a.Duplicates, a)
	}
	// The later copy is also out of order: seq 5 after seq 99.
	if a.OutOfOrder != 1 {
		t.Fatalf("out of order %d, want 1", a.OutOfOrder)
	}
}

func TestAuditInconsistentOffset(t *testing.T) {
	acked, consumed := history(100)
	// A second read of offset 7 returns another record than the first.
	consumed = append(consumed, ConsumedRecord{Partition: 0, Offset: 7, ID: RecordID{Producer: 2, Seq: 0}})
	a := Audit(acked, consumed)
	if a.OK() || a.InconsistentOffsets == 0 {
		t.Fatalf("two records at one offset not found: %+v", a)
	}
	if !strings.Contains(a.Problem(), "0/7") {
		t.Fatalf("problem %q does not name offset 0/7", a.Problem())
	}

	// The acknowledgement said offset 50, the log holds another record
	// there.
	acked, consumed = history(100)
	consumed[50].ID = RecordID{Producer: 9, Seq: 9}
	a = Audit(acked, consumed)
	if a.OK() || a.InconsistentOffsets == 0 || a.Lost != 1 {
		t.Fatalf("acknowledged offset holding another record: %+v", a)
	}
}

func TestAuditReorder(t *testing.T) {
	acked, consumed := history(100)
	// Offsets 30 and 31 hold the producer's records 31 and 30.
	acked[30].ID, acked[31].ID = acked[31].ID, acked[30].ID
	consumed[30].ID, consumed[31].ID = consumed[31].ID, consumed[30].ID
	a := Audit(acked, consumed)
	if a.OutOfOrder != 1 || a.OutOfOrderRecords[0].ID.Seq != 30 {
		t.Fatalf("out of order %d: %+v", a.OutOfOrder, a.OutOfOrderRecords)
	}
	if !a.OK() {
		t.Fatalf("a reorder alone fails the audit: %s", a.Problem())
	}
}

func TestAuditUnacknowledgedWrite(t *testing.T) {
	acked, consumed := history(100)
	acked = acked[:99] // the last send failed, but it landed
	a := Audit(acked, consumed)
	if !a.OK() || a.UnacknowledgedWritten != 1 {
		t.Fatalf("%+v", a)
	}
}

func TestRecoveries(t *testing.T) {
	start := time.Unix(0, 0)
	// 100 acks/s for 10 s, none from 5 s to 7 s (the fault at 5 s).
	var acks []time.Duration
	for t := time.Duration(0); t < 10*time.Second; t += 10 * time.Millisecond {
		if t < 5*time.Second || t >= 7*time.Second {
			acks = append(acks, t)
		}
	}
	ev := FaultEvent{At: start.Add(5 * time.Second), Kind: LeaderKill, Broker: 1}
	rs := recoveries([]FaultEvent{ev}, start, acks, 10*time.Second, 0)
	if len(rs) != 1 {
		t.Fatalf("%d reports", len(rs))
	}
	r := rs[0]
	if r.WritesStoppedFor < 1.9 || r.WritesStoppedFor > 2.1 {
		t.Fatalf("writes stopped %.2f s, want 2", r.WritesStoppedFor)
	}
	if r.BaselineRate < 99 || r.BaselineRate > 101 {
		t.Fatalf("baseline %.1f/s, want 100", r.BaselineRate)
	}
	if r.RecoveredAfter == nil || *r.RecoveredAfter < 1.9 || *r.RecoveredAfter > 2.1 {
		t.Fatalf("recovered after %v, want 2 s", r.RecoveredAfter)
	}
	// An open-loop run compares with its offered rate: at 200/s offered
	// the 100/s that came back is not a recovery.
	rs = recoveries([]FaultEvent{ev}, start, acks, 10*time.Second, 200)
	if rs[0].BaselineRate != 200 || rs[0].RecoveredAfter != nil {
		t.Fatalf("against 200/s offered: baseline %v, recovered after %v", rs[0].BaselineRate, rs[0].RecoveredAfter)
	}
}
