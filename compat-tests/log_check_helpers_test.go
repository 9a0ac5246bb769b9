package compattests

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Checking a topic's log after faults: as consumed, and on every replica's
// disk, against the acknowledged records.

// topicLog is a topic's log: offset to value, per partition.
type topicLog map[int32]map[int64]string

func (tl topicLog) put(p int32, off int64, v string) (string, bool) {
	if tl[p] == nil {
		tl[p] = make(map[int64]string)
	}
	old, dup := tl[p][off]
	tl[p][off] = v
	return old, dup
}

// endOffsets lists the high watermarks of topic, asking until every
// partition answers without error.
func (c *cluster) endOffsets(ctx context.Context, topic string, partitions int32) map[int32]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	adm := kadm.NewClient(c.client(nil))
	var ends map[int32]int64
	var last error
	ok := ktest.Until(ctx, pollEvery, func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		defer lcancel()
		listed, err := adm.ListEndOffsets(lctx, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			last = err
			return false
		}
		ends = make(map[int32]int64)
		listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
		if len(ends) != int(partitions) {
			last = fmt.Errorf("%d of %d partitions listed", len(ends), partitions)
			return false
		}
		return true
	})
	if !ok {
		c.t.Fatalf("listing end offsets of %s: %v", topic, last)
	}
	return ends
}

// consumeAll reads every partition of topic from offset 0 to its high
// watermark with franz-go and returns the log and the high watermarks.
func (c *cluster) consumeAll(ctx context.Context, topic string, partitions int32) (topicLog, map[int32]int64) {
	c.t.Helper()
	ends := c.endOffsets(ctx, topic, partitions)
	assign := make(map[int32]kgo.Offset)
	for p, end := range ends {
		if end > 0 {
			assign[p] = kgo.NewOffset().At(0)
		}
	}
	log := topicLog{}
	if len(assign) == 0 {
		return log, ends
	}
	cl := c.client(nil, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}), kgo.FetchMaxWait(500*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var lastErr error
	complete := func() bool {
		for p, end := range ends {
			if int64(len(log[p])) < end {
				return false
			}
		}
		return true
	}
	for !complete() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			got := make(map[int32]int)
			for p, m := range log {
				got[p] = len(m)
			}
			c.t.Fatalf("consuming %s: read %v records of end offsets %v before %v (last fetch error: %v)", topic, got, ends, ctx.Err(), lastErr)
		}
		fs.EachError(func(_ string, _ int32, err error) { lastErr = err })
		fs.EachRecord(func(r *kgo.Record) {
			if old, dup := log.put(r.Partition, r.Offset, string(r.Value)); dup && old != string(r.Value) {
				c.t.Errorf("partition %d offset %d read as %q and as %q", r.Partition, r.Offset, old, r.Value)
			}
		})
	}
	return log, ends
}

// checkLog compares a topic's log with the acknowledgements: per partition
// the offsets are dense from 0, every acknowledged record is at the offset
// it was acknowledged with, and no value appears twice; with exact, the
// log holds nothing that was not acknowledged; none of absent appears. It
// returns the problems found.
func checkTopicLog(log topicLog, acks []ackedRecord, exact bool, absent ...string) []string {
	var problems []string
	where := make(map[string]string)
	for p, m := range log {
		offs := make([]int64, 0, len(m))
		for o := range m {
			offs = append(offs, o)
		}
		slices.Sort(offs)
		for i, o := range offs {
			if o != int64(i) {
				problems = append(problems, fmt.Sprintf("partition %d: offsets not dense from 0: position %d holds offset %d", p, i, o))
				break
			}
		}
		for _, o := range offs {
			v := m[o]
			at := fmt.Sprintf("partition %d offset %d", p, o)
			if prev, dup := where[v]; dup {
				problems = append(problems, fmt.Sprintf("value %q at both %s and %s", v, prev, at))
			}
			where[v] = at
		}
	}
	ackedValues := make(map[string]bool, len(acks))
	for _, a := range acks {
		if ackedValues[a.Value] {
			problems = append(problems, fmt.Sprintf("value %q acknowledged twice", a.Value))
		}
		ackedValues[a.Value] = true
		got, ok := log[a.Partition][a.Offset]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("record %q acknowledged at partition %d offset %d is missing (log holds %d records there)", a.Value, a.Partition, a.Offset, len(log[a.Partition])))
		case got != a.Value:
			problems = append(problems, fmt.Sprintf("record %q acknowledged at partition %d offset %d, but that offset holds %q", a.Value, a.Partition, a.Offset, got))
		}
	}
	if exact {
		for v, at := range where {
			if !ackedValues[v] {
				problems = append(problems, fmt.Sprintf("%s holds %q, which was never acknowledged", at, v))
			}
		}
	}
	for _, v := range absent {
		if at, ok := where[v]; ok {
			problems = append(problems, fmt.Sprintf("%s holds %q, which must not be in the log", at, v))
		}
	}
	sort.Strings(problems)
	return problems
}

// reportProblems fails the test with the first few problems.
func reportLogProblems(t testing.TB, what string, problems []string) {
	t.Helper()
	for i, p := range problems {
		if i == 10 {
			t.Errorf("%s: %d more problems", what, len(problems)-i)
			break
		}
		t.Errorf("%s: %s", what, p)
	}
}

// replicaStats describes what a replica's Raft log held.
type replicaStats struct {
	entries  int // Raft log entries
	batches  int // record batches in command entries
	rejected int // command entries the partition FSM would not apply
	// logStart is per partition the highest log start a stored entry
	// sets (none when retention never ran).
	logStart map[int32]int64
}

// setLogStartEntry marks (in its Raft log extensions) a partition entry
// that sets the log start to the big-endian offset it holds.
const setLogStartEntry = 1

// readReplica reads one broker's copy of a topic straight from its data
// directory (the broker must be stopped): the Raft log of every partition
// group, with its command entries applied as the partition FSM applies
// them (an entry must continue the offsets; others are skipped). A log
// that still holds its first entry starts at offset 0; one whose entries
// below the log start were deleted starts where its first command entry
// does.
func readReplica(dir string, topicID [16]byte, partitions int32) (topicLog, replicaStats, error) {
	st := replicaStats{logStart: make(map[int32]int64)}
	store, err := storage.OpenBadger(storage.BadgerOptions{Dir: dir, Logger: zerolog.Nop(), GCInterval: -1})
	if err != nil {
		return nil, st, err
	}
	defer store.Close()
	log := topicLog{}
	dec := kgo.DefaultDecompressor()
	for p := range partitions {
		group := fmt.Sprintf("p/%x/%d", topicID, p)
		rl, err := raftlog.Open(store, group)
		if err != nil {
			return nil, st, err
		}
		first, _ := rl.FirstIndex()
		last, _ := rl.LastIndex()
		if first == 0 {
			return nil, st, fmt.Errorf("group %s has no log", group)
		}
		// Index 1 is the bootstrap configuration, so a log holding it has
		// lost nothing to retention.
		next, anchored := int64(0), first == 1
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := rl.GetLog(i, &l); err != nil {
				return nil, st, fmt.Errorf("group %s entry %d of [%d, %d]: %w", group, i, first, last, err)
			}
			st.entries++
			if l.Type != raft.LogCommand {
				continue
			}
			if len(l.Extensions) > 0 {
				if l.Extensions[0] == setLogStartEntry && len(l.Data) == 8 {
					st.logStart[p] = max(st.logStart[p], int64(binary.BigEndian.Uint64(l.Data)))
				}
				continue
			}
			if !anchored && len(l.Data) >= 8 {
				next, anchored = int64(binary.BigEndian.Uint64(l.Data)), true
			}
			recs, end, n, err := entryRecords(l.Data, next, dec)
			if err != nil {
				st.rejected++
				continue
			}
			st.batches += n
			for _, r := range recs {
				if _, dup := log.put(p, r.off, r.value); dup {
					return nil, st, fmt.Errorf("group %s entry %d repeats offset %d", group, i, r.off)
				}
			}
			next = end
		}
	}
	return log, st, nil
}

type storedRecord struct {
	off   int64
	value string
}

// entryRecords decodes the record batches packed into one Raft entry,
// which must start at offset next, and returns the records, the offset
// after them and the number of batches.
func entryRecords(data []byte, next int64, dec kgo.Decompressor) ([]storedRecord, int64, int, error) {
	var out []storedRecord
	n := 0
	for len(data) > 0 {
		if len(data) < 12 {
			return nil, 0, 0, fmt.Errorf("%d trailing bytes", len(data))
		}
		size := 12 + int(int32(binary.BigEndian.Uint32(data[8:])))
		if size < 61 || size > len(data) {
			return nil, 0, 0, fmt.Errorf("batch of %d bytes in %d", size, len(data))
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[:size]); err != nil {
			return nil, 0, 0, fmt.Errorf("decoding batch: %w", err)
		}
		data = data[size:]
		if b.FirstOffset != next {
			return nil, 0, 0, fmt.Errorf("batch at offset %d where %d follows", b.FirstOffset, next)
		}
		raw, err := dec.Decompress(b.Records, kgo.CompressionCodecType(b.Attributes&0x07))
		if err != nil {
			return nil, 0, 0, fmt.Errorf("decompressing batch at %d: %w", b.FirstOffset, err)
		}
		for range b.NumRecords {
			l, k := binary.Varint(raw)
			if k <= 0 || l < 0 || int(l) > len(raw)-k {
				return nil, 0, 0, fmt.Errorf("bad record length in batch at %d", b.FirstOffset)
			}
			var r kmsg.Record
			if err := r.ReadFrom(raw[:k+int(l)]); err != nil {
				return nil, 0, 0, fmt.Errorf("decoding record in batch at %d: %w", b.FirstOffset, err)
			}
			raw = raw[k+int(l):]
			out = append(out, storedRecord{off: b.FirstOffset + int64(r.OffsetDelta), value: string(r.Value)})
		}
		next = b.FirstOffset + int64(b.LastOffsetDelta) + 1
		n++
	}
	return out, next, n, nil
}

// checkReplicas stops the cluster and checks every broker's stored copy of
// the topic: it must equal want (the log as consumed) and pass checkLog. A
// replica may lag at the moment of the stop, so while one differs the
// cluster is started again, left to elect leaders for the topic, and
// stopped again, at most replicaRounds times. The cluster is left stopped.
func (c *cluster) checkReplicas(ctx context.Context, topic string, topicID [16]byte, partitions int32, want topicLog, acks []ackedRecord, exact bool, absent ...string) {
	c.t.Helper()
	var problems []string
	for round := 1; ; round++ {
		before := c.newestLeaders(topic)
		c.stopAll()
		problems = problems[:0]
		for i, b := range c.brokers {
			id := i + 1
			log, st, err := readReplica(b.dataDir, topicID, partitions)
			if err != nil {
				problems = append(problems, fmt.Sprintf("broker %d: reading its replica: %v", id, err))
				continue
			}
			if st.rejected > 0 {
				c.t.Logf("broker %d: %d command entries of %s would be rejected by the partition FSM", id, st.rejected, topic)
			}
			for _, p := range checkTopicLog(log, acks, exact, absent...) {
				problems = append(problems, fmt.Sprintf("broker %d replica: %s", id, p))
			}
			for _, p := range diffLogs(want, log) {
				problems = append(problems, fmt.Sprintf("broker %d replica: %s", id, p))
			}
			if round == 1 || len(problems) == 0 {
				c.t.Logf("broker %d replica of %s: %d Raft entries, %d batches, %d records", id, topic, st.entries, st.batches, countRecords(log))
			}
		}
		if len(problems) == 0 {
			c.t.Logf("all %d replicas of %s hold the consumed log (check round %d)", clusterSize, topic, round)
			return
		}
		if round == replicaRounds {
			break
		}
		c.t.Logf("replica check round %d: %d differences (first: %s); restarting the cluster to let replicas catch up", round, len(problems), problems[0])
		c.restartAll(ctx)
		c.waitLeaders(ctx, topic, partitions, newerThan(before))
	}
	reportLogProblems(c.t, fmt.Sprintf("replicas of %s after %d rounds", topic, replicaRounds), problems)
}

// diffLogs lists where got differs from want.
func diffLogs(want, got topicLog) []string {
	var out []string
	for p, wm := range want {
		gm := got[p]
		if len(gm) != len(wm) {
			out = append(out, fmt.Sprintf("partition %d holds %d records, the consumed log %d", p, len(gm), len(wm)))
		}
		for o, v := range wm {
			if g, ok := gm[o]; !ok || g != v {
				out = append(out, fmt.Sprintf("partition %d offset %d holds %q (present %v), consumed %q", p, o, g, ok, v))
				break
			}
		}
	}
	for p, gm := range got {
		if _, ok := want[p]; !ok && len(gm) > 0 {
			out = append(out, fmt.Sprintf("partition %d holds %d records, the consumed log none", p, len(gm)))
		}
	}
	return out
}

func countRecords(log topicLog) int {
	n := 0
	for _, m := range log {
		n += len(m)
	}
	return n
}
