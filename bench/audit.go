package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// AckedRecord is a record the cluster acknowledged: where it says the
// record was written, and when the acknowledgement arrived (since the run
// started).
type AckedRecord struct {
	Partition int32
	Offset    int64
	ID        RecordID
	AckedAt   time.Duration
}

// ConsumedRecord is a record as a consumer polled it.
type ConsumedRecord struct {
	Partition int32
	// Session numbers the consumer's uninterrupted ownership of the
	// partition the record was polled in: it changes whenever an assign,
	// revoke or lost callback of that consumer names the partition, and
	// no two consumers share one for a partition. (It fills what would
	// otherwise be padding.)
	Session uint32
	Offset  int64
	ID      RecordID
}

// RecordAt names a record and where it was (or was said to be).
type RecordAt struct {
	ID        RecordID `json:"id"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Detail    string   `json:"detail,omitempty"`
}

func (r RecordAt) String() string {
	s := fmt.Sprintf("%v at %d/%d", r.ID, r.Partition, r.Offset)
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// AuditResult is the data audit of a run, in the vocabulary of Jepsen's
// Kafka checker:
//   - lost: acknowledged, never consumed, although the consumers read every
//     partition to the end offsets taken after the producers stopped;
//   - duplicate: one record at more than one offset (a retried write that
//     landed twice);
//   - inconsistent offset: one partition offset seen with two different
//     records (between two reads, or between the acknowledgement and a
//     read);
//   - moved: an acknowledged record read, but never at the offset its
//     acknowledgement gave;
//   - out of order: within a partition, a producer's record at a higher
//     offset than one it sent later;
//   - backwards poll: within one session (one consumer's uninterrupted
//     ownership of a partition), a record polled at an offset no higher
//     than the record polled before it;
//   - skipped poll: within one session, a record polled after another
//     with some offset of the log as read (every offset any consumer read)
//     between the two;
//   - redelivered: the same offset consumed again (after a rebalance;
//     harmless, counted for information);
//   - unacknowledged written: consumed but never acknowledged (a send that
//     failed or timed out but landed: allowed, since its outcome was
//     unknown).
//
// The log as read holds this run's records only: records of other runs
// are not audited, so a poll that passes over them skips nothing.
//
// A run fails on lost records, inconsistent offsets, moved records and
// backwards or skipped polls; the *_records lists name the first few of
// each kind.
type AuditResult struct {
	Acked                 int64      `json:"acked"`
	Consumed              int64      `json:"consumed"`
	Distinct              int64      `json:"distinct_offsets"`
	Lost                  int64      `json:"lost"`
	Duplicates            int64      `json:"duplicates"`
	InconsistentOffsets   int64      `json:"inconsistent_offsets"`
	Moved                 int64      `json:"moved"`
	OutOfOrder            int64      `json:"out_of_order"`
	BackwardsPolls        int64      `json:"backwards_polls"`
	SkippedPolls          int64      `json:"skipped_polls"`
	Redelivered           int64      `json:"redelivered"`
	UnacknowledgedWritten int64      `json:"unacknowledged_written"`
	LostRecords           []RecordAt `json:"lost_records"`
	DuplicateRecords      []RecordAt `json:"duplicate_records"`
	InconsistentRecords   []RecordAt `json:"inconsistent_records"`
	MovedRecords          []RecordAt `json:"moved_records"`
	OutOfOrderRecords     []RecordAt `json:"out_of_order_records"`
	BackwardsPollRecords  []RecordAt `json:"backwards_poll_records"`
	SkippedPollRecords    []RecordAt `json:"skipped_poll_records"`
}

// auditExamples is how many records of each kind an audit names.
const auditExamples = 10

// OK reports whether the run kept every acknowledged record where it was
// acknowledged, never showed two records at one offset, and every consumer
// read each partition in order without skipping.
func (a *AuditResult) OK() bool {
	return a.Lost == 0 && a.InconsistentOffsets == 0 && a.Moved == 0 && a.BackwardsPolls == 0 && a.SkippedPolls == 0
}

// Problem describes what failed, naming the first records, or "" if the
// audit is clean.
func (a *AuditResult) Problem() string {
	var parts []string
	if a.Lost > 0 {
		parts = append(parts, fmt.Sprintf("%d acknowledged records lost (%s)", a.Lost, joinRecords(a.LostRecords)))
	}
	if a.InconsistentOffsets > 0 {
		parts = append(parts, fmt.Sprintf("%d inconsistent offsets (%s)", a.InconsistentOffsets, joinRecords(a.InconsistentRecords)))
	}
	if a.Moved > 0 {
		parts = append(parts, fmt.Sprintf("%d acknowledged records read at another offset (%s)", a.Moved, joinRecords(a.MovedRecords)))
	}
	if a.BackwardsPolls > 0 {
		parts = append(parts, fmt.Sprintf("%d backwards polls (%s)", a.BackwardsPolls, joinRecords(a.BackwardsPollRecords)))
	}
	if a.SkippedPolls > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped polls (%s)", a.SkippedPolls, joinRecords(a.SkippedPollRecords)))
	}
	return strings.Join(parts, "; ")
}

func joinRecords(rs []RecordAt) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

type offsetKey struct {
	Partition int32
	Offset    int64
}

func cmpOffset(a, b offsetKey) int {
	return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
}

func cmpID(a, b RecordID) int {
	return cmp.Or(cmp.Compare(a.Producer, b.Producer), cmp.Compare(a.Seq, b.Seq))
}

// Audit checks the acknowledged records against the consumed ones, which
// are in the order polled (each consumer's polls in order; consumers may
// interleave). It sorts acked in place and leaves consumed as it is.
func Audit(acked []AckedRecord, consumed []ConsumedRecord) AuditResult {
	res := AuditResult{Acked: int64(len(acked)), Consumed: int64(len(consumed))}
	add := func(list *[]RecordAt, r RecordAt) {
		if len(*list) < auditExamples {
			*list = append(*list, r)
		}
	}
	inconsistent := func(r RecordAt) {
		res.InconsistentOffsets++
		add(&res.InconsistentRecords, r)
	}

	// The log as read: one entry per (offset, record), in offset order.
	log := slices.Clone(consumed)
	slices.SortFunc(log, func(a, b ConsumedRecord) int {
		return cmp.Or(cmpOffset(offsetKey{a.Partition, a.Offset}, offsetKey{b.Partition, b.Offset}), cmpID(a.ID, b.ID))
	})
	log = slices.CompactFunc(log, func(a, b ConsumedRecord) bool {
		return a.Partition == b.Partition && a.Offset == b.Offset && a.ID == b.ID
	})
	res.Redelivered = int64(len(consumed) - len(log))
	for i := 1; i < len(log); i++ {
		if prev, c := log[i-1], log[i]; prev.Partition == c.Partition && prev.Offset == c.Offset {
			inconsistent(RecordAt{ID: c.ID, Partition: c.Partition, Offset: c.Offset, Detail: "also read as " + prev.ID.String()})
		}
	}
	res.Distinct = int64(len(log))

	// Polls: within a session, each record polled must be the next one of
	// the log as read after the record polled before it. Offsets need not
	// be contiguous, so the next one is found in the log, not by adding 1.
	type sessionKey struct {
		partition int32
		session   uint32
	}
	type polled struct {
		offset int64
		next   int // index in log of the first entry past offset
	}
	polls := make(map[sessionKey]polled)
	for _, c := range consumed {
		next, _ := slices.BinarySearchFunc(log, offsetKey{c.Partition, c.Offset + 1}, func(e ConsumedRecord, k offsetKey) int {
			return cmpOffset(offsetKey{e.Partition, e.Offset}, k)
		})
		k := sessionKey{c.Partition, c.Session}
		if prev, ok := polls[k]; ok {
			// c is in the log past prev.offset, so log[prev.next] is in
			// c's partition, at or before c.
			switch {
			case c.Offset <= prev.offset:
				res.BackwardsPolls++
				add(&res.BackwardsPollRecords, RecordAt{ID: c.ID, Partition: c.Partition, Offset: c.Offset,
					Detail: fmt.Sprintf("polled after %d/%d", c.Partition, prev.offset)})
			case log[prev.next].Offset < c.Offset:
				res.SkippedPolls++
				add(&res.SkippedPollRecords, RecordAt{ID: c.ID, Partition: c.Partition, Offset: c.Offset,
					Detail: fmt.Sprintf("polled after %d/%d, skipping %d/%d", c.Partition, prev.offset, c.Partition, log[prev.next].Offset)})
			}
		}
		polls[k] = polled{offset: c.Offset, next: next}
	}

	// Out of order: a producer's sequence numbers must rise with the
	// offsets of each partition.
	type prodPart struct {
		partition int32
		producer  uint32
	}
	last := make(map[prodPart]RecordAt)
	for _, c := range log {
		k := prodPart{c.Partition, c.ID.Producer}
		if prev, ok := last[k]; ok && c.ID.Seq < prev.ID.Seq {
			res.OutOfOrder++
			add(&res.OutOfOrderRecords, RecordAt{ID: c.ID, Partition: c.Partition, Offset: c.Offset, Detail: "after " + prev.String()})
		}
		if prev, ok := last[k]; !ok || c.ID.Seq > prev.ID.Seq {
			last[k] = RecordAt{ID: c.ID, Partition: c.Partition, Offset: c.Offset}
		}
	}

	// Acknowledgements against the log, by offset.
	slices.SortFunc(acked, func(a, b AckedRecord) int {
		return cmp.Or(cmpOffset(offsetKey{a.Partition, a.Offset}, offsetKey{b.Partition, b.Offset}), cmpID(a.ID, b.ID))
	})
	j := 0
	for i, a := range acked {
		k := offsetKey{a.Partition, a.Offset}
		if i > 0 && acked[i-1].Partition == a.Partition && acked[i-1].Offset == a.Offset && acked[i-1].ID != a.ID {
			inconsistent(RecordAt{ID: a.ID, Partition: a.Partition, Offset: a.Offset, Detail: "offset also acknowledged for " + acked[i-1].ID.String()})
		}
		for j < len(log) && cmpOffset(offsetKey{log[j].Partition, log[j].Offset}, k) < 0 {
			j++
		}
		found, other := false, RecordID{}
		for m := j; m < len(log) && log[m].Partition == a.Partition && log[m].Offset == a.Offset; m++ {
			if log[m].ID == a.ID {
				found = true
			} else {
				other = log[m].ID
			}
		}
		if !found && j < len(log) && log[j].Partition == a.Partition && log[j].Offset == a.Offset {
			inconsistent(RecordAt{ID: a.ID, Partition: a.Partition, Offset: a.Offset, Detail: "acknowledged here, read " + other.String()})
		}
	}

	// By identity: duplicates, lost records, and writes never acknowledged.
	byID := slices.Clone(log)
	slices.SortFunc(byID, func(a, b ConsumedRecord) int { return cmpID(a.ID, b.ID) })
	for i := 1; i < len(byID); i++ {
		if byID[i].ID == byID[i-1].ID {
			res.Duplicates++
			add(&res.DuplicateRecords, RecordAt{ID: byID[i].ID, Partition: byID[i].Partition, Offset: byID[i].Offset,
				Detail: fmt.Sprintf("also at %d/%d", byID[i-1].Partition, byID[i-1].Offset)})
		}
	}
	slices.SortFunc(acked, func(a, b AckedRecord) int { return cmpID(a.ID, b.ID) })
	j = 0
	for _, a := range acked {
		for j < len(byID) && cmpID(byID[j].ID, a.ID) < 0 {
			res.UnacknowledgedWritten++
			j++
		}
		if j == len(byID) || byID[j].ID != a.ID {
			res.Lost++
			add(&res.LostRecords, RecordAt{ID: a.ID, Partition: a.Partition, Offset: a.Offset})
			continue
		}
		placed, read := false, byID[j]
		for ; j < len(byID) && byID[j].ID == a.ID; j++ {
			placed = placed || (byID[j].Partition == a.Partition && byID[j].Offset == a.Offset)
		}
		if !placed {
			res.Moved++
			add(&res.MovedRecords, RecordAt{ID: a.ID, Partition: a.Partition, Offset: a.Offset,
				Detail: fmt.Sprintf("acknowledged here, read at %d/%d", read.Partition, read.Offset)})
		}
	}
	for ; j < len(byID); j++ {
		res.UnacknowledgedWritten++
	}
	return res
}
