package compattests

// Retention on a replicated partition: the leader moves the log start
// through Raft and every replica deletes the Raft entries below it. A
// replica that was down meanwhile needs entries the leader no longer has,
// so it must catch up from a snapshot that carries the retained entries.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	snapRetentionCheck = 300 * time.Millisecond
	snapRetentionBytes = 300000
	// snapChunk records of snapValueSize bytes go in one produce call:
	// about 33 KB, one batch and so one Raft entry, which retention
	// deletes as a whole.
	snapChunk     = 32
	snapValueSize = 1000
	// snapMaxRecords bounds each phase that writes until retention has
	// moved the log start far enough (about 3 MB).
	snapMaxRecords = 3000
)

// TestClusterSnapshotCatchUp SIGKILLs a follower, writes until retention
// has moved the log start past everything it holds (so the leader has
// deleted the entries it lacks), restarts it, and checks that it caught up
// from a snapshot: with the third broker frozen, acks=all writes need it;
// with the old leader then killed, it is the only broker that can win the
// election; it serves the log from the log start; and its disk holds the
// same records from there on and none below.
func TestClusterSnapshotCatchUp(t *testing.T) {
	c := startClusterWith(t, "--retention-check-interval", snapRetentionCheck.String())
	ctx := testContext(t, 3*time.Minute)
	const topic = "snapshot-catch-up"
	created := createClusterTopicWith(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3,
		map[string]*string{"retention.bytes": kadm.StringPtr(strconv.Itoa(snapRetentionBytes))})
	c.waitLeadersEverywhere(ctx, topic, 1, nil)
	w := &snapWriter{c: c, topic: topic}

	// Retention runs before the kill too, so the victim's own log is
	// already truncated when it dies.
	w.produce(ctx, t, "before-kill", 1000)
	leaders := c.newestLeaders(topic)
	w.produceUntilStart(ctx, t, leaders[0].Leader, "before-kill", func(s int64) bool { return s > 0 })
	leaders = c.newestLeaders(topic)
	checkReplicaSets(t, topic, leaders, 3)
	lead, epoch := leaders[0].Leader, leaders[0].Epoch
	var victim, other int32
	for _, id := range leaders[0].Replicas {
		switch {
		case id == lead:
		case victim == 0:
			victim = id
		default:
			other = id
		}
	}
	c.broker(victim).Kill()
	// Nothing was in flight, so the victim holds no offset at or past
	// the leader's end.
	killEnd := c.offsetOn(ctx, lead, topic, -1)
	t.Logf("SIGKILLed broker %d, a follower; leader %d at epoch %d, end offset %d, log start %d",
		victim, lead, epoch, killEnd, c.offsetOn(ctx, lead, topic, -2))

	start := w.produceUntilStart(ctx, t, lead, "while-down", func(s int64) bool { return s > killEnd })
	// A retention pass moves the start and then deletes the entries below
	// it, and passes do not overlap: once the start moves again, the
	// entries below start are gone on the leader, and with them every
	// entry the victim lacks.
	caughtUpTo := w.produceUntilStart(ctx, t, lead, "while-down", func(s int64) bool { return s > start })
	if l := c.newestLeaders(topic)[0]; l.Leader != lead || l.Epoch != epoch {
		t.Fatalf("killing follower %d moved the leadership from %d at epoch %d to %d at epoch %d", victim, lead, epoch, l.Leader, l.Epoch)
	}
	t.Logf("log start %d then %d, past the victim's end %d; %d records written", start, caughtUpTo, killEnd, len(w.acks))

	c.broker(victim).Restart()
	c.waitReady(ctx)
	w.produce(ctx, t, "after-restart", 4*snapChunk)

	// With the third broker frozen, the leader needs the victim for a
	// quorum: these writes are acknowledged only once it holds the log,
	// which it can get only from a snapshot. The producer is the one
	// used so far: a new client could pick the frozen broker for its
	// first requests and wait out their timeouts.
	c.pause(other)
	frozenAt := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	w.produce(fctx, t, "other-frozen", 4*snapChunk)
	cancel()
	t.Logf("with broker %d frozen, acks=all writes through leader %d and restarted broker %d succeeded %v after the freeze",
		other, lead, victim, time.Since(frozenAt).Round(time.Millisecond))
	frozenEnd := int64(len(w.acks))

	// The frozen broker lacks the last writes, so once the leader dies
	// only the victim can be elected.
	c.broker(lead).Kill()
	c.resume(other)
	elected := c.waitLeadersEverywhere(ctx, topic, 1, func(_ int32, l partLeader) bool { return l.Epoch > epoch })
	if elected[0].Leader != victim {
		t.Fatalf("after leader %d was killed, broker %d was elected at epoch %d; only %d holds every acknowledged record", lead, elected[0].Leader, elected[0].Epoch, victim)
	}
	t.Logf("SIGKILLed leader %d; restarted broker %d leads at epoch %d", lead, victim, elected[0].Epoch)
	w.produce(ctx, t, "after-failover", 4*snapChunk)

	want := w.log(t)
	end := c.offsetOn(ctx, victim, topic, -1)
	if end != int64(len(want)) {
		t.Fatalf("end offset on broker %d is %d, want %d (one per acknowledged record)", victim, end, len(want))
	}
	first := w.consumeFrom(ctx, t, victim, end, want)
	logStart := c.offsetOn(ctx, victim, topic, -2)
	if first > logStart {
		t.Errorf("reading from the start on broker %d began at offset %d, above its log start %d", victim, first, logStart)
	}
	t.Logf("broker %d served offsets %d to %d (log start %d)", victim, first, end-1, logStart)

	c.stopAll()
	stored := make(map[int32]storedRange)
	for id := int32(1); id <= clusterSize; id++ {
		log, st, err := readReplica(c.broker(id).dataDir, [16]byte(created.ID), 1)
		if err != nil {
			t.Fatalf("broker %d: reading its replica: %v", id, err)
		}
		r := checkStoredRange(t, id, log[0], want)
		r.logStart = st.logStart[0]
		stored[id] = r
		t.Logf("broker %d replica: %d Raft entries, offsets %d to %d, log start %d (%d entries rejected)",
			id, st.entries, r.lo, r.hi, r.logStart, st.rejected)
	}
	for id, r := range stored {
		// Every replica has run retention since the log start passed
		// start: the leader before it moved the start again, the others
		// in the seconds since.
		if r.lo < start {
			t.Errorf("broker %d still holds offset %d, below the log start %d retention set long before it stopped", id, r.lo, start)
		}
		if r.lo > r.logStart {
			t.Errorf("broker %d holds offsets from %d on, above its log start %d", id, r.lo, r.logStart)
		}
		wantHi := end - 1
		if id == lead {
			wantHi = frozenEnd - 1
		}
		if r.hi != wantHi {
			t.Errorf("broker %d holds offsets up to %d, want %d", id, r.hi, wantHi)
		}
	}
	if v := stored[victim]; v.lo < caughtUpTo {
		t.Errorf("restarted broker %d holds offset %d, below the log start %d it caught up to", victim, v.lo, caughtUpTo)
	}
}

// snapWriter produces numbered records of snapValueSize bytes, a chunk
// per call, and keeps their acknowledgements.
type snapWriter struct {
	c     *cluster
	topic string
	cl    *kgo.Client
	acks  []ackedRecord
}

// snapValue is record n's value: its prefix and number, padded.
func snapValue(prefix string, n int) string {
	v := fmt.Sprintf("%s-%07d-", prefix, n)
	return v + strings.Repeat(string(rune('a'+n%26)), snapValueSize-len(v))
}

// produce writes records in chunks through a fresh client of the live
// brokers (some may have died since the last call); any failure fails the
// test.
func (w *snapWriter) produce(ctx context.Context, t *testing.T, prefix string, records int) {
	t.Helper()
	if w.cl == nil {
		w.cl = w.c.client(nil, append(producerOpts(), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	}
	cl := w.cl
	for done := 0; done < records; {
		recs := make([]*kgo.Record, min(snapChunk, records-done))
		for i := range recs {
			recs[i] = &kgo.Record{Topic: w.topic, Value: []byte(snapValue(prefix, len(w.acks)+i))}
		}
		pctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
		res := cl.ProduceSync(pctx, recs...)
		cancel()
		if err := res.FirstErr(); err != nil {
			t.Fatalf("producing %s records to %s after %d acknowledged: %v", prefix, w.topic, len(w.acks), err)
		}
		for _, r := range res {
			w.acks = append(w.acks, ackedRecord{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: string(r.Record.Value), At: time.Now()})
		}
		done += len(recs)
	}
}

// produceUntilStart writes chunks until the log start on broker id
// satisfies cond and returns that log start; after snapMaxRecords it
// writes no more and gives retention a few passes.
func (w *snapWriter) produceUntilStart(ctx context.Context, t *testing.T, id int32, prefix string, cond func(int64) bool) int64 {
	t.Helper()
	var s int64
	for n := 0; ; n += snapChunk {
		if s = w.c.offsetOn(ctx, id, w.topic, -2); cond(s) {
			return s
		}
		if n >= snapMaxRecords {
			break
		}
		w.produce(ctx, t, prefix, snapChunk)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*snapRetentionCheck)
	defer cancel()
	if ktest.Until(pctx, pollEvery, func() bool { s = w.c.offsetOn(ctx, id, w.topic, -2); return cond(s) }) {
		return s
	}
	t.Fatalf("log start on broker %d is %d after %d records (%d more in this phase)", id, s, len(w.acks), snapMaxRecords)
	return 0
}

// log is the acknowledged log, offset to value; the acknowledgements must
// cover the offsets from 0 densely, once each.
func (w *snapWriter) log(t *testing.T) map[int64]string {
	t.Helper()
	out := make(map[int64]string, len(w.acks))
	for _, a := range w.acks {
		if old, dup := out[a.Offset]; dup {
			t.Fatalf("offset %d acknowledged for %.20q and %.20q", a.Offset, old, a.Value)
		}
		out[a.Offset] = a.Value
	}
	for o := range int64(len(out)) {
		if _, ok := out[o]; !ok {
			t.Fatalf("%d records acknowledged, but none at offset %d", len(out), o)
		}
	}
	return out
}

// consumeFrom reads the partition from its start to end through broker id
// only, checks every record against want and that the offsets are dense,
// and returns the first offset read.
func (w *snapWriter) consumeFrom(ctx context.Context, t *testing.T, id int32, end int64, want map[int64]string) int64 {
	t.Helper()
	cl := w.c.client([]int32{id}, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{w.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(500*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	first, next := int64(-1), int64(-1)
	var lastErr error
	for next < end {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s from broker %d: at offset %d of %d before %v (last fetch error: %v)", w.topic, id, next, end, ctx.Err(), lastErr)
		}
		fs.EachError(func(_ string, _ int32, err error) { lastErr = err })
		for _, r := range fs.Records() {
			if first < 0 {
				first, next = r.Offset, r.Offset
			}
			if r.Offset != next {
				t.Fatalf("broker %d served offset %d where %d follows", id, r.Offset, next)
			}
			if v := string(r.Value); v != want[r.Offset] {
				t.Fatalf("broker %d served %.20q at offset %d, acknowledged there: %.20q", id, v, r.Offset, want[r.Offset])
			}
			next++
		}
	}
	return first
}

// offsetOn asks broker id for the partition's end (timestamp -1) or start
// (-2) offset until it answers.
func (c *cluster) offsetOn(ctx context.Context, id int32, topic string, timestamp int64) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var off int64
	var last string
	if !ktest.Until(ctx, pollEvery, func() bool {
		code, o, err := listOffsetsAt(c.broker(id).Addr(), topic, 0, timestamp)
		off, last = o, outcome(err, code)
		return err == nil && code == 0
	}) {
		c.t.Fatalf("ListOffsets (timestamp %d) of %s on broker %d: %s", timestamp, topic, id, last)
	}
	return off
}

// storedRange is what a replica stores: offsets lo to hi, and the log
// start its entries set.
type storedRange struct{ lo, hi, logStart int64 }

// checkStoredRange checks that a replica's stored records are dense and
// hold the acknowledged values, and returns their range.
func checkStoredRange(t *testing.T, id int32, recs map[int64]string, want map[int64]string) storedRange {
	t.Helper()
	if len(recs) == 0 {
		t.Fatalf("broker %d stores no record", id)
	}
	offs := slices.Sorted(maps.Keys(recs))
	r := storedRange{lo: offs[0], hi: offs[len(offs)-1]}
	if int64(len(offs)) != r.hi-r.lo+1 {
		t.Errorf("broker %d stores %d records between offsets %d and %d", id, len(offs), r.lo, r.hi)
	}
	for _, o := range offs {
		if recs[o] != want[o] {
			t.Errorf("broker %d stores %.20q at offset %d, acknowledged there: %.20q", id, recs[o], o, want[o])
			break
		}
	}
	return r
}

// TestClusterDeleteRecordsFrees moves the log start of a topic without a
// retention limit (retention.ms -1) with DeleteRecords and checks that every replica then
// deletes the Raft entries below it from its disk.
func TestClusterDeleteRecordsFrees(t *testing.T) {
	c := startClusterWith(t, "--retention-check-interval", snapRetentionCheck.String())
	ctx := testContext(t, 2*time.Minute)
	const topic = "delete-records-frees"
	adm := kadm.NewClient(c.client(nil))
	created := createClusterTopicWith(ctx, t, adm, topic, 1, 3, map[string]*string{"retention.ms": kadm.StringPtr("-1")})
	c.waitLeadersEverywhere(ctx, topic, 1, nil)
	w := &snapWriter{c: c, topic: topic}
	w.produce(ctx, t, "records", 20*snapChunk)

	// A chunk is one Raft entry, so cutting at a chunk boundary leaves no
	// entry that holds offsets on both sides.
	cut := int64(15 * snapChunk)
	res, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: cut}}})
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if r, ok := res.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != cut {
		t.Fatalf("DeleteRecords to %d answered %+v (present %v)", cut, r, ok)
	}
	// Followers learn that the new start is committed from the next
	// append (when idle, within Raft's CommitTimeout of 5 to 10 s): one
	// more chunk carries it. Ten retention passes follow.
	w.produce(ctx, t, "records", snapChunk)
	time.Sleep(10 * snapRetentionCheck)
	want := w.log(t)
	c.stopAll()
	for id := int32(1); id <= clusterSize; id++ {
		log, st, err := readReplica(c.broker(id).dataDir, [16]byte(created.ID), 1)
		if err != nil {
			t.Fatalf("broker %d: reading its replica: %v", id, err)
		}
		r := checkStoredRange(t, id, log[0], want)
		t.Logf("broker %d replica: %d Raft entries, offsets %d to %d", id, st.entries, r.lo, r.hi)
		if r.lo != cut || r.hi != int64(len(want))-1 {
			t.Errorf("broker %d stores offsets %d to %d, want %d to %d", id, r.lo, r.hi, cut, len(want)-1)
		}
	}
}
