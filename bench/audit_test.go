package bench

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// history builds a clean run: n records of one producer on partition 0,
// acknowledged and consumed at offsets 0..n-1 in one session.
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
	// A redelivery after a rebalance (in a new session) is not a fault.
	consumed = append(consumed, inSession(consumed[10:20], 1)...)
	a := Audit(acked, consumed)
	if !a.OK() || a.Lost+a.Duplicates+a.InconsistentOffsets+a.Moved+a.OutOfOrder+a.BackwardsPolls+a.SkippedPolls != 0 || a.Redelivered != 10 || a.Distinct != 100 {
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
	consumed = append(consumed, ConsumedRecord{Partition: 0, Session: 1, Offset: 7, ID: RecordID{Producer: 2, Seq: 0}})
	a := Audit(acked, consumed)
	if a.OK() || a.InconsistentOffsets == 0 || a.Moved != 0 {
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

// inSession copies records into session s.
func inSession(rs []ConsumedRecord, s uint32) []ConsumedRecord {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Session = s
	}
	return out
}

func TestAuditMoved(t *testing.T) {
	acked, consumed := history(100)
	// Record 5 was acknowledged at offset 100 but read at offset 5, and
	// nothing else was read at 100.
	acked[5].Offset = 100
	a := Audit(acked, consumed)
	if a.OK() || a.Moved != 1 || a.InconsistentOffsets != 0 || a.Lost != 0 {
		t.Fatalf("moved %d, inconsistent %d, lost %d: %+v", a.Moved, a.InconsistentOffsets, a.Lost, a)
	}
	if r := a.MovedRecords[0]; r.ID.Seq != 5 || r.Offset != 100 || !strings.Contains(r.Detail, "0/5") {
		t.Fatalf("moved record %v", r)
	}
	if !strings.Contains(a.Problem(), "read at another offset") {
		t.Fatalf("problem %q does not name the moved record", a.Problem())
	}
}

func TestAuditBackwardsPoll(t *testing.T) {
	acked, consumed := history(100)
	// Within its session, the consumer polls 45..49 again after 49.
	consumed = slices.Concat(consumed[:50], consumed[45:])
	a := Audit(acked, consumed)
	if a.OK() || a.BackwardsPolls != 1 || a.SkippedPolls != 0 || a.Redelivered != 5 {
		t.Fatalf("backwards %d, skipped %d, redelivered %d: %+v", a.BackwardsPolls, a.SkippedPolls, a.Redelivered, a)
	}
	if r := a.BackwardsPollRecords[0]; r.Offset != 45 || r.Detail != "polled after 0/49" {
		t.Fatalf("backwards poll %v", r)
	}
	if !strings.Contains(a.Problem(), "1 backwards polls") {
		t.Fatalf("problem %q", a.Problem())
	}

	// Polling one offset twice in a row is backwards too.
	acked, consumed = history(10)
	consumed = slices.Insert(consumed, 4, consumed[3])
	if a := Audit(acked, consumed); a.BackwardsPolls != 1 {
		t.Fatalf("one offset polled twice: %+v", a)
	}
}

func TestAuditSkippedPoll(t *testing.T) {
	acked, consumed := history(100)
	// Another consumer's session reads the whole partition, passing over
	// 60..62, which the first one read.
	consumed = append(consumed, inSession(slices.Concat(consumed[:60], consumed[63:]), 7)...)
	a := Audit(acked, consumed)
	if a.OK() || a.SkippedPolls != 1 || a.BackwardsPolls != 0 || a.Lost != 0 {
		t.Fatalf("skipped %d, backwards %d: %+v", a.SkippedPolls, a.BackwardsPolls, a)
	}
	if r := a.SkippedPollRecords[0]; r.Offset != 63 || r.Detail != "polled after 0/59, skipping 0/60" {
		t.Fatalf("skipped poll %v", r)
	}
	if !strings.Contains(a.Problem(), "1 skipped polls") {
		t.Fatalf("problem %q", a.Problem())
	}
}

func TestAuditSessions(t *testing.T) {
	acked, consumed := history(100)
	// Consumer A reads 0..49; after a rebalance consumer B reads 40..59
	// (from the committed offset), A gets the partition back and reads
	// 55..99 from B's commit. Its sessions before and after are apart.
	consumed = slices.Concat(consumed[:50], inSession(consumed[40:60], 1), inSession(consumed[55:], 2))
	a := Audit(acked, consumed)
	if !a.OK() || a.BackwardsPolls+a.SkippedPolls != 0 || a.Redelivered != 15 {
		t.Fatalf("redelivery across sessions audited as %+v", a)
	}

	// A session that resumes past records another read is no skip
	// either: A reads 0..29, B 30..34, A again from 35.
	acked, consumed = history(100)
	consumed = slices.Concat(consumed[:30], inSession(consumed[30:35], 1), inSession(consumed[35:], 2))
	if a := Audit(acked, consumed); !a.OK() || a.BackwardsPolls+a.SkippedPolls != 0 {
		t.Fatalf("hand-over audited as %+v", a)
	}
}

func TestAuditGaps(t *testing.T) {
	// Two partitions with even offsets only (the odd ones hold what no
	// consumer returns, such as transaction markers), polled
	// alternately in one session each.
	var acked []AckedRecord
	var consumed []ConsumedRecord
	for i := range 50 {
		for p := range int32(2) {
			id := RecordID{Producer: uint32(p), Seq: uint64(i)}
			acked = append(acked, AckedRecord{Partition: p, Offset: int64(2 * i), ID: id})
			consumed = append(consumed, ConsumedRecord{Partition: p, Session: 3, Offset: int64(2 * i), ID: id})
		}
	}
	a := Audit(acked, consumed)
	if !a.OK() || a.BackwardsPolls+a.SkippedPolls+a.OutOfOrder != 0 || a.Distinct != 100 {
		t.Fatalf("non-contiguous offsets audited as %+v", a)
	}
	// Passing over offset 20 of partition 1 is a skip, 20 being in the
	// log as read.
	consumed = append(consumed, inSession(slices.DeleteFunc(slices.Clone(consumed), func(c ConsumedRecord) bool {
		return c.Partition != 1 || c.Offset == 20
	}), 4)...)
	if a := Audit(acked, consumed); a.SkippedPolls != 1 || a.SkippedPollRecords[0].Detail != "polled after 1/18, skipping 1/20" {
		t.Fatalf("skip over a non-contiguous offset: %+v", a)
	}
}

func TestAuditSchema(t *testing.T) {
	// Every field of the audit is in the schema, and a result with every
	// kind of example matches it.
	acked, consumed := history(100)
	acked[5].Offset = 200
	consumed = slices.Concat(consumed[:50], consumed[45:], inSession(slices.Concat(consumed[:60], consumed[62:]), 1))
	consumed = append(consumed, ConsumedRecord{Partition: 0, Session: 2, Offset: 7, ID: RecordID{Producer: 2}})
	a := Audit(acked, consumed)
	if a.Moved == 0 || a.BackwardsPolls == 0 || a.SkippedPolls == 0 || a.InconsistentOffsets == 0 {
		t.Fatalf("%+v", a)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Audit struct {
				Required   []string       `json:"required"`
				Properties map[string]any `json:"properties"`
			} `json:"audit"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatal(err)
	}
	sa := schema.Properties.Audit
	for f := range fields {
		if _, ok := sa.Properties[f]; !ok {
			t.Errorf("audit field %s not in the schema", f)
		}
		if !strings.HasSuffix(f, "_records") && !slices.Contains(sa.Required, f) {
			t.Errorf("audit count %s not required by the schema", f)
		}
	}

	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json#/properties/audit")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("audit does not match the schema: %v", err)
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
