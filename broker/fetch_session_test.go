package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionVersions are Fetch versions with sessions: by topic name (v7-v12)
// and by topic ID (v13+).
var sessionVersions = []int16{7, 12, 13, 18}

// tp is a partition as a Fetch request or answer names it: by name before
// v13, by topic ID from v13 on.
type tp struct {
	topic string
	id    [16]byte
	part  int32
}

func (p tp) String() string {
	if p.topic != "" {
		return p.topic + "/" + strconv.Itoa(int(p.part))
	}
	return fmt.Sprintf("%x/%d", p.id[:4], p.part)
}

// reqPart is one partition a test fetches.
type reqPart struct {
	tp
	offset int64
}

// sessionTopic names a test topic in a request of version v.
type sessionTopic struct {
	name string
	id   [16]byte
}

func (st sessionTopic) at(v int16, part int32) tp {
	if v >= 13 {
		return tp{id: st.id, part: part}
	}
	return tp{topic: st.name, part: part}
}

func (st sessionTopic) part(v int16, part int32, offset int64) reqPart {
	return reqPart{st.at(v, part), offset}
}

// sessionReq builds a Fetch of version v in session id at epoch, answered
// at once, listing parts (consecutive partitions of a topic share its
// entry).
func sessionReq(v int16, id, epoch int32, parts ...reqPart) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = v
	req.ReplicaID = -1
	req.MinBytes = 1
	req.MaxBytes = 50 << 20
	req.SessionID, req.SessionEpoch = id, epoch
	for _, p := range parts {
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != p.topic || req.Topics[n-1].TopicID != p.id {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = p.topic, p.id
			req.Topics = append(req.Topics, rt)
		}
		rt := &req.Topics[len(req.Topics)-1]
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p.part, p.offset, 1<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	return req
}

// forget adds partitions to a request's ForgottenTopics.
func forget(req *kmsg.FetchRequest, parts ...tp) {
	for _, p := range parts {
		ft := kmsg.NewFetchRequestForgottenTopic()
		ft.Topic, ft.TopicID, ft.Partitions = p.topic, p.id, []int32{p.part}
		req.ForgottenTopics = append(req.ForgottenTopics, ft)
	}
}

// answered lists the partitions of a Fetch answer in order, failing on a
// top-level error or a partition named twice.
func answered(t testing.TB, resp *kmsg.FetchResponse) ([]tp, map[tp]kmsg.FetchResponseTopicPartition) {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("top-level error %s", errName(resp.ErrorCode))
	}
	var order []tp
	parts := make(map[tp]kmsg.FetchResponseTopicPartition)
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			p := tp{st.Topic, st.TopicID, sp.Partition}
			if _, dup := parts[p]; dup {
				t.Fatalf("%v answered twice", p)
			}
			order = append(order, p)
			parts[p] = sp
		}
	}
	return order, parts
}

// expectAnswered checks that an answer holds exactly the partitions want,
// in that order.
func expectAnswered(t testing.TB, resp *kmsg.FetchResponse, want ...tp) map[tp]kmsg.FetchResponseTopicPartition {
	t.Helper()
	order, parts := answered(t, resp)
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("answered %v, want %v: %+v", order, want, resp.Topics)
	}
	return parts
}

// startSession makes a full fetch that creates a session and checks that
// it answers every partition listed.
func startSession(t testing.TB, c *ktest.Conn, v int16, parts ...reqPart) (int32, map[tp]kmsg.FetchResponseTopicPartition) {
	t.Helper()
	resp := c.Do(sessionReq(v, 0, 0, parts...)).(*kmsg.FetchResponse)
	var want []tp
	for _, p := range parts {
		want = append(want, p.tp)
	}
	got := expectAnswered(t, resp, want...)
	if resp.SessionID <= 0 {
		t.Fatalf("session ID %d after a full fetch at epoch 0, want a new session", resp.SessionID)
	}
	return resp.SessionID, got
}

// TestFetchSessionIncremental: a full fetch at epoch 0 creates a session;
// the incremental fetches that follow answer only the partitions with
// records, or whose high watermark or log start offset moved, whether or
// not the request lists them, and leave out the others.
func TestFetchSessionIncremental(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for _, v := range sessionVersions {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			name := uniqueTopic(t, "")
			topic := sessionTopic{name, createTopic(t, c, name, 3)}
			var batches [3][]byte
			for p := range int32(3) {
				batches[p] = newBatch(t, name+"/"+strconv.Itoa(int(p)))
				produce(t, c, name, p, batches[p])
			}
			id, got := startSession(t, c, v, topic.part(v, 0, 0), topic.part(v, 1, 0), topic.part(v, 2, 0))
			for p := range int32(3) {
				sp := got[topic.at(v, p)]
				if sp.ErrorCode != 0 || sp.HighWatermark != 1 {
					t.Fatalf("partition %d: error %s, high watermark %d", p, errName(sp.ErrorCode), sp.HighWatermark)
				}
				expectBatches(t, sp.RecordBatches, [][]byte{batches[p]}, []int64{0})
			}
			epoch := int32(1)
			next := func(parts ...reqPart) *kmsg.FetchResponse {
				t.Helper()
				resp := c.Do(sessionReq(v, id, epoch, parts...)).(*kmsg.FetchResponse)
				if resp.SessionID != id {
					t.Fatalf("epoch %d: session ID %d, want %d", epoch, resp.SessionID, id)
				}
				epoch++
				return resp
			}

			// The consumer moves on to offset 1 everywhere: nothing new.
			expectAnswered(t, next(topic.part(v, 0, 1), topic.part(v, 1, 1), topic.part(v, 2, 1)))
			expectAnswered(t, next())

			// A record on partition 1 is answered without being asked
			// for; the others stay out.
			more := newBatch(t, "more")
			produce(t, c, name, 1, more)
			sp := expectAnswered(t, next(), topic.at(v, 1))[topic.at(v, 1)]
			if sp.HighWatermark != 2 {
				t.Fatalf("high watermark %d, want 2", sp.HighWatermark)
			}
			expectBatches(t, sp.RecordBatches, [][]byte{more}, []int64{1})
			expectAnswered(t, next(topic.part(v, 1, 2)))

			// A new log start offset is news too.
			if lw := deleteRecords(t, c, name, 2, 1); lw.ErrorCode != 0 {
				t.Fatalf("delete records: %s", errName(lw.ErrorCode))
			}
			sp = expectAnswered(t, next(), topic.at(v, 2))[topic.at(v, 2)]
			if sp.LogStartOffset != 1 || len(sp.RecordBatches) != 0 {
				t.Fatalf("log start %d, %d record bytes; want 1 and none", sp.LogStartOffset, len(sp.RecordBatches))
			}
			expectAnswered(t, next())

			// Moving a fetch offset back brings its records again.
			sp = expectAnswered(t, next(topic.part(v, 0, 0)), topic.at(v, 0))[topic.at(v, 0)]
			expectBatches(t, sp.RecordBatches, [][]byte{batches[0]}, []int64{0})
		})
	}
}

// TestFetchSessionForgottenTopics: a forgotten partition leaves the
// session (by name before Fetch v13, by topic ID from v13); a request that
// forgets the last ones closes the session and is answered without one.
func TestFetchSessionForgottenTopics(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for _, v := range sessionVersions {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			na, nb := uniqueTopic(t, "a"), uniqueTopic(t, "b")
			ta := sessionTopic{na, createTopic(t, c, na, 2)}
			tb := sessionTopic{nb, createTopic(t, c, nb, 1)}
			id, _ := startSession(t, c, v, ta.part(v, 0, 0), ta.part(v, 1, 0), tb.part(v, 0, 0))

			req := sessionReq(v, id, 1)
			forget(req, ta.at(v, 0), ta.at(v, 1))
			expectAnswered(t, c.Do(req).(*kmsg.FetchResponse))
			produce(t, c, na, 0, newBatch(t, "a"))
			produce(t, c, na, 1, newBatch(t, "a"))
			produce(t, c, nb, 0, newBatch(t, "b"))
			expectAnswered(t, c.Do(sessionReq(v, id, 2)).(*kmsg.FetchResponse), tb.at(v, 0))

			// Forgetting an unknown partition is no error.
			req = sessionReq(v, id, 3, tb.part(v, 0, 1))
			forget(req, ta.at(v, 0), tb.at(v, 7))
			expectAnswered(t, c.Do(req).(*kmsg.FetchResponse))

			// A partition listed again is back in the session, and
			// answered at once.
			req = sessionReq(v, id, 4, ta.part(v, 1, 0))
			forget(req, tb.at(v, 0))
			expectAnswered(t, c.Do(req).(*kmsg.FetchResponse), ta.at(v, 1))

			// A request that forgets the session's last partition closes
			// the session and, as Kafka, is answered without one for the
			// partitions it lists (here the one it also forgets).
			req = sessionReq(v, id, 5, ta.part(v, 1, 1))
			forget(req, ta.at(v, 1))
			resp := c.Do(req).(*kmsg.FetchResponse)
			if resp.SessionID != 0 {
				t.Fatalf("session ID %d after emptying the session", resp.SessionID)
			}
			expectAnswered(t, resp, ta.at(v, 1))
			resp = c.Do(sessionReq(v, id, 6)).(*kmsg.FetchResponse)
			if resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
				t.Fatalf("fetch in the emptied session: %s, want FETCH_SESSION_ID_NOT_FOUND", errName(resp.ErrorCode))
			}
		})
	}
}

// TestFetchSessionEpochs: an incremental fetch must carry exactly the
// epoch that follows the last one (INVALID_FETCH_SESSION_EPOCH otherwise,
// which leaves the session as it was); an unknown session is
// FETCH_SESSION_ID_NOT_FOUND; a full fetch naming the session closes it
// (epoch -1) or replaces it (epoch 0); a session keeps to the way of
// naming topics it started with (FETCH_SESSION_TOPIC_ID_ERROR).
func TestFetchSessionEpochs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	topic := sessionTopic{name, createTopic(t, c, name, 1)}
	produce(t, c, name, 0, newBatch(t, "x"))
	expectError := func(t *testing.T, resp *kmsg.FetchResponse, want *kerr.Error) {
		t.Helper()
		if resp.ErrorCode != want.Code || len(resp.Topics) != 0 {
			t.Fatalf("error %s with %d topics, want %s and none", errName(resp.ErrorCode), len(resp.Topics), want.Message)
		}
	}
	for _, v := range sessionVersions {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			id, _ := startSession(t, c, v, topic.part(v, 0, 1))
			for _, epoch := range []int32{2, 7, -2, 1 << 30} {
				expectError(t, c.Do(sessionReq(v, id, epoch)).(*kmsg.FetchResponse), kerr.InvalidFetchSessionEpoch)
			}
			expectError(t, c.Do(sessionReq(v, id+1, 1)).(*kmsg.FetchResponse), kerr.FetchSessionIDNotFound)
			expectAnswered(t, c.Do(sessionReq(v, id, 1)).(*kmsg.FetchResponse))
			expectError(t, c.Do(sessionReq(v, id, 1)).(*kmsg.FetchResponse), kerr.InvalidFetchSessionEpoch)
			expectAnswered(t, c.Do(sessionReq(v, id, 2)).(*kmsg.FetchResponse))

			other := int16(12)
			if v < 13 {
				other = 13
			}
			expectError(t, c.Do(sessionReq(other, id, 3)).(*kmsg.FetchResponse), kerr.FetchSessionTopicIDError)

			// Epoch 0 naming the session: a new session in its place.
			resp := c.Do(sessionReq(v, id, 0, topic.part(v, 0, 0))).(*kmsg.FetchResponse)
			expectAnswered(t, resp, topic.at(v, 0))
			renewed := resp.SessionID
			if renewed <= 0 || renewed == id {
				t.Fatalf("session ID %d after a full fetch replacing %d", renewed, id)
			}
			expectError(t, c.Do(sessionReq(v, id, 3)).(*kmsg.FetchResponse), kerr.FetchSessionIDNotFound)
			expectAnswered(t, c.Do(sessionReq(v, renewed, 1, topic.part(v, 0, 1))).(*kmsg.FetchResponse))

			// Epoch -1 (FINAL) naming the session: closed, answered in
			// full without a session.
			resp = c.Do(sessionReq(v, renewed, -1, topic.part(v, 0, 0))).(*kmsg.FetchResponse)
			expectAnswered(t, resp, topic.at(v, 0))
			if resp.SessionID != 0 {
				t.Fatalf("session ID %d after a full fetch at the final epoch", resp.SessionID)
			}
			expectError(t, c.Do(sessionReq(v, renewed, 2)).(*kmsg.FetchResponse), kerr.FetchSessionIDNotFound)
		})
	}
}

// TestFetchSessionCacheFull: with every slot taken by a session created
// less than two minutes ago, a full fetch at epoch 0 is answered without a
// session (ID 0), however many partitions it has, until a slot is freed.
func TestFetchSessionCacheFull(t *testing.T) {
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxFetchSessions = 2 }))
	c := dial(t, b)
	name := uniqueTopic(t, "")
	topic := sessionTopic{name, createTopic(t, c, name, 4)}
	const v = 13
	first, _ := startSession(t, c, v, topic.part(v, 0, 0))
	startSession(t, c, v, topic.part(v, 1, 0))
	all := []reqPart{topic.part(v, 0, 0), topic.part(v, 1, 0), topic.part(v, 2, 0), topic.part(v, 3, 0)}
	resp := c.Do(sessionReq(v, 0, 0, all...)).(*kmsg.FetchResponse)
	expectAnswered(t, resp, topic.at(v, 0), topic.at(v, 1), topic.at(v, 2), topic.at(v, 3))
	if resp.SessionID != 0 {
		t.Fatalf("session %d created in a full cache", resp.SessionID)
	}
	// Both sessions still work.
	expectAnswered(t, c.Do(sessionReq(v, first, 1)).(*kmsg.FetchResponse))
	// Closing one frees its slot.
	c.Do(sessionReq(v, first, -1, topic.part(v, 0, 0)))
	startSession(t, c, v, all...)

	t.Run("no slots", func(t *testing.T) {
		b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxFetchSessions = 0 }))
		c := dial(t, b)
		topic := sessionTopic{name, createTopic(t, c, name, 1)}
		resp := c.Do(sessionReq(v, 0, 0, topic.part(v, 0, 0))).(*kmsg.FetchResponse)
		expectAnswered(t, resp, topic.at(v, 0))
		if resp.SessionID != 0 {
			t.Fatalf("session %d with sessions turned off", resp.SessionID)
		}
	})
}

// TestFetchSessionLongPoll: an incremental fetch that waits for MinBytes
// waits on every partition of its session, and wakes when a partition it
// did not list gets a record.
func TestFetchSessionLongPoll(t *testing.T) {
	b := runBroker(t)
	fc := dial(t, b)
	pc := dial(t, b)
	name := uniqueTopic(t, "")
	topic := sessionTopic{name, createTopic(t, pc, name, 2)}
	const v = 16
	id, _ := startSession(t, fc, v, topic.part(v, 0, 0), topic.part(v, 1, 0))

	req := sessionReq(v, id, 1, topic.part(v, 0, 0))
	req.MaxWaitMillis = 20000
	start := time.Now()
	corr := fc.Send(req)
	fc.ExpectNoResponse(200 * time.Millisecond)
	batch := newBatch(t, "wake up")
	produce(t, pc, name, 1, batch)

	resp := kmsg.NewPtrFetchResponse()
	resp.Version = v
	if got := fc.Recv(resp); got != corr {
		t.Fatalf("correlation id %d, want %d", got, corr)
	}
	if elapsed := time.Since(start); elapsed >= 10*time.Second {
		t.Fatalf("fetch answered after %v: the produce did not wake it", elapsed)
	}
	sp := expectAnswered(t, resp, topic.at(v, 1))[topic.at(v, 1)]
	expectBatches(t, sp.RecordBatches, [][]byte{batch}, []int64{0})
}

// TestFetchSessionFairness: when the response size limit stops the reads
// after the first partition with records, that partition moves to the end
// of the session, so that the next fetches serve the others in turn.
func TestFetchSessionFairness(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	topic := sessionTopic{name, createTopic(t, c, name, 3)}
	const v = 12
	for p := range int32(3) {
		produce(t, c, name, p, newBatch(t, strings.Repeat("x", 1000)))
	}
	// A limit of one byte: only the first partition with records answers
	// them (its first batch, whole).
	req := sessionReq(v, 0, 0, topic.part(v, 0, 0), topic.part(v, 1, 0), topic.part(v, 2, 0))
	req.MaxBytes = 1
	resp := c.Do(req).(*kmsg.FetchResponse)
	_, parts := answered(t, resp)
	id := resp.SessionID
	if id <= 0 || len(parts[topic.at(v, 0)].RecordBatches) == 0 || len(parts[topic.at(v, 1)].RecordBatches) != 0 {
		t.Fatalf("session %d; record bytes %d, %d", id, len(parts[topic.at(v, 0)].RecordBatches), len(parts[topic.at(v, 1)].RecordBatches))
	}
	// The consumer does not move its offsets, so each partition has
	// records every time; the one served moves to the end.
	for i, want := range []int32{0, 1, 2, 0, 1} {
		req := sessionReq(v, id, int32(i+1))
		req.MaxBytes = 1
		sp := expectAnswered(t, c.Do(req).(*kmsg.FetchResponse), topic.at(v, want))[topic.at(v, want)]
		if len(sp.RecordBatches) == 0 {
			t.Fatalf("fetch %d: partition %d answered without records", i+1, want)
		}
	}
}

// TestFetchSessionReadCommitted: a read_committed session reports a
// partition whose last stable offset moved, and answers the records of an
// aborted transaction with the transaction listed.
func TestFetchSessionReadCommitted(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	topic := sessionTopic{name, createTopic(t, c, name, 2)}
	const v = 13
	req := sessionReq(v, 0, 0, topic.part(v, 0, 0), topic.part(v, 1, 0))
	req.IsolationLevel = 1
	resp := c.Do(req).(*kmsg.FetchResponse)
	expectAnswered(t, resp, topic.at(v, 0), topic.at(v, 1))
	id := resp.SessionID
	next := func(epoch int32) *kmsg.FetchResponse {
		req := sessionReq(v, id, epoch)
		req.IsolationLevel = 1
		return c.Do(req).(*kmsg.FetchResponse)
	}

	p := newTxnProducer(t, c, name)
	if code := p.addPartitions(name, 1); code != 0 {
		t.Fatalf("AddPartitionsToTxn: %s", errName(code))
	}
	if sp := p.produce(9, name, 1, "a", "b"); sp.ErrorCode != 0 {
		t.Fatalf("produce: %s", errName(sp.ErrorCode))
	}
	// Open: the high watermark moved, the last stable offset did not, and
	// read_committed sees no records yet.
	sp := expectAnswered(t, next(1), topic.at(v, 1))[topic.at(v, 1)]
	if sp.HighWatermark != 2 || sp.LastStableOffset != 0 || len(sp.RecordBatches) != 0 {
		t.Fatalf("open transaction: high watermark %d, last stable %d, %d record bytes", sp.HighWatermark, sp.LastStableOffset, len(sp.RecordBatches))
	}
	expectAnswered(t, next(2))
	if code := p.end(false); code != 0 {
		t.Fatalf("EndTxn abort: %s", errName(code))
	}
	sp = expectAnswered(t, next(3), topic.at(v, 1))[topic.at(v, 1)]
	if sp.HighWatermark != 3 || sp.LastStableOffset != 3 || len(sp.RecordBatches) == 0 {
		t.Fatalf("aborted: high watermark %d, last stable %d, %d record bytes", sp.HighWatermark, sp.LastStableOffset, len(sp.RecordBatches))
	}
	if len(sp.AbortedTransactions) != 1 || sp.AbortedTransactions[0].ProducerID != p.pid || sp.AbortedTransactions[0].FirstOffset != 0 {
		t.Fatalf("aborted transactions %+v, want producer %d from offset 0", sp.AbortedTransactions, p.pid)
	}
}

// TestFetchSessionTopicRecreated: a session never reads a deleted topic's
// partitions from a new topic of the same name without telling. By topic
// ID (v13+), the old ID is UNKNOWN_TOPIC_ID once deleted and
// INCONSISTENT_TOPIC_ID once the name is re-created, as Kafka answers; by
// name, the partition is answered from the new topic even where its
// offsets happen to equal the old ones.
func TestFetchSessionTopicRecreated(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for _, v := range sessionVersions {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			name := uniqueTopic(t, "")
			topic := sessionTopic{name, createTopic(t, c, name, 1)}
			produce(t, c, name, 0, newBatch(t, "old"))
			id, _ := startSession(t, c, v, topic.part(v, 0, 1))
			deleteTopic := func() {
				t.Helper()
				if resp := c.Do(deleteTopicsReq(6, name)).(*kmsg.DeleteTopicsResponse); resp.Topics[0].ErrorCode != 0 {
					t.Fatalf("delete: %s", errName(resp.Topics[0].ErrorCode))
				}
			}
			if v >= 13 {
				deleteTopic()
				sp := expectAnswered(t, c.Do(sessionReq(v, id, 1)).(*kmsg.FetchResponse), topic.at(v, 0))[topic.at(v, 0)]
				if sp.ErrorCode != kerr.UnknownTopicID.Code {
					t.Fatalf("deleted: %s, want UNKNOWN_TOPIC_ID", errName(sp.ErrorCode))
				}
				createTopic(t, c, name, 1)
				produce(t, c, name, 0, newBatch(t, "new"))
				sp = expectAnswered(t, c.Do(sessionReq(v, id, 2)).(*kmsg.FetchResponse), topic.at(v, 0))[topic.at(v, 0)]
				if sp.ErrorCode != kerr.InconsistentTopicID.Code || len(sp.RecordBatches) != 0 {
					t.Fatalf("re-created: %s with %d record bytes, want INCONSISTENT_TOPIC_ID", errName(sp.ErrorCode), len(sp.RecordBatches))
				}
				return
			}
			// Deleted and re-created between two fetches, with one
			// record again: the same high watermark and log start.
			deleteTopic()
			createTopic(t, c, name, 1)
			produce(t, c, name, 0, newBatch(t, "new"))
			sp := expectAnswered(t, c.Do(sessionReq(v, id, 1)).(*kmsg.FetchResponse), topic.at(v, 0))[topic.at(v, 0)]
			if sp.ErrorCode != 0 || sp.HighWatermark != 1 {
				t.Fatalf("re-created: %s, high watermark %d", errName(sp.ErrorCode), sp.HighWatermark)
			}
			expectAnswered(t, c.Do(sessionReq(v, id, 2)).(*kmsg.FetchResponse))
			deleteTopic()
			sp = expectAnswered(t, c.Do(sessionReq(v, id, 3)).(*kmsg.FetchResponse), topic.at(v, 0))[topic.at(v, 0)]
			if sp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("deleted: %s, want UNKNOWN_TOPIC_OR_PARTITION", errName(sp.ErrorCode))
			}
		})
	}
}

// fetchSizes records the size of every Fetch request a client writes.
type fetchSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (f *fetchSizes) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		f.mu.Lock()
		f.sizes = append(f.sizes, n)
		f.mu.Unlock()
	}
}

func (f *fetchSizes) smallest() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	least := -1
	for _, n := range f.sizes {
		if least < 0 || n < least {
			least = n
		}
	}
	return least, len(f.sizes)
}

// TestFetchSessionFranzGo: a franz-go consumer of a topic with 200
// partitions reads every record exactly once, in order, with fetch
// sessions (its later Fetches are incremental and small) and without them,
// while records keep arriving.
func TestFetchSessionFranzGo(t *testing.T) {
	const partitions, perPartition = 200, 10
	b := runBroker(t)
	c := dial(t, b)
	for _, sessions := range []bool{true, false} {
		t.Run("sessions "+strconv.FormatBool(sessions), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			name := uniqueTopic(t, "")
			createTopic(t, c, name, partitions)
			prod := newClient(t, b, kgo.DefaultProduceTopic(name), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceHalf := func(half int) {
				t.Helper()
				var recs []*kgo.Record
				for p := range int32(partitions) {
					for i := range perPartition / 2 {
						recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d/%d", p, half*perPartition/2+i)})
					}
				}
				if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
			}
			produceHalf(0)

			sizes := &fetchSizes{}
			opts := []kgo.Opt{kgo.ConsumeTopics(name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxWait(200 * time.Millisecond), kgo.WithHooks(sizes)}
			if !sessions {
				opts = append(opts, kgo.DisableFetchSessions())
			}
			cons := newClient(t, b, opts...)
			next := make(map[int32]int64) // next offset per partition
			total, produced := 0, false
			for total < partitions*perPartition {
				if ctx.Err() != nil {
					t.Fatalf("read %d of %d records", total, partitions*perPartition)
				}
				fs := cons.PollFetches(ctx)
				fs.EachError(func(topic string, p int32, err error) {
					if ctx.Err() == nil {
						t.Fatalf("fetch %s/%d: %v", topic, p, err)
					}
				})
				fs.EachRecord(func(r *kgo.Record) {
					if r.Offset != next[r.Partition] {
						t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
					}
					if want := fmt.Sprintf("%d/%d", r.Partition, r.Offset); string(r.Value) != want {
						t.Fatalf("partition %d offset %d holds %q, want %q", r.Partition, r.Offset, r.Value, want)
					}
					next[r.Partition]++
					total++
				})
				if !produced && total >= partitions*perPartition/2 {
					produceHalf(1)
					produced = true
				}
			}
			// Nothing more comes.
			idle, stop := context.WithTimeout(ctx, 500*time.Millisecond)
			defer stop()
			if n := cons.PollFetches(idle).NumRecords(); n != 0 {
				t.Fatalf("%d records after all were read", n)
			}
			least, n := sizes.smallest()
			// A full Fetch of the 200 partitions takes thousands of bytes;
			// an incremental one with nothing new to list, a few dozen.
			// (Without sessions a Fetch may still be small: franz-go
			// leaves out partitions whose fetched records it still holds.)
			if full := partitions * 20; sessions && least >= full/4 {
				t.Fatalf("smallest of %d Fetch requests %d bytes: no incremental fetch", n, least)
			}
			t.Logf("%d Fetch requests, the smallest %d bytes", n, least)
		})
	}
}

// FuzzFetchSessionRequests sends incremental fetches made from arbitrary
// bytes into a live session: whatever they hold, the broker answers with an
// error code rather than failing, and keeps serving.
func FuzzFetchSessionRequests(f *testing.F) {
	b := runBroker(f)
	c := dial(f, b)
	name := uniqueTopic(f, "")
	topicID := createTopic(f, c, name, 3)
	produce(f, c, name, 1, newBatch(f, "x"))
	f.Add([]byte{13, 1, 0, 2, 1, 0, 0, 1, 1})
	f.Add([]byte{12, 1, 0, 3, 0, 0, 0, 2, 1, 2, 1, 9, 0, 0})
	f.Add([]byte{18, 2, 7, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3})
	f.Add([]byte{7, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := dial(t, b)
		byte1 := func() byte {
			if len(data) == 0 {
				return 0
			}
			v := data[0]
			data = data[1:]
			return v
		}
		int32of := func() int32 { return int32(binary.BigEndian.Uint32([]byte{byte1(), byte1(), byte1(), byte1()})) }
		v := 7 + int16(byte1())%12
		full := c.Do(sessionReq(v, 0, 0, sessionTopic{name, topicID}.part(v, 0, 0), sessionTopic{name, topicID}.part(v, 1, 0))).(*kmsg.FetchResponse)
		id := full.SessionID
		req := sessionReq(v, id, 1)
		switch byte1() % 4 {
		case 1:
			req.SessionID = int32of()
		case 2:
			req.SessionEpoch = int32of()
		case 3:
			req.SessionEpoch = int32(byte1()) - 2
		}
		req.MaxBytes = int32of()
		req.IsolationLevel = int8(byte1() % 3)
		topicOf := func() (string, [16]byte) {
			switch byte1() % 4 {
			case 0:
				return name, topicID
			case 1:
				return "", [16]byte{byte1()}
			case 2:
				return strings.Repeat("z", int(byte1())), [16]byte{}
			default:
				return name, [16]byte{}
			}
		}
		for range byte1() % 4 {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = topicOf()
			for range byte1() % 4 {
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition = int32(int8(byte1()))
				rp.FetchOffset = int64(int32of())
				rp.PartitionMaxBytes = int32of()
				rp.CurrentLeaderEpoch = int32(int8(byte1()))
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		for range byte1() % 4 {
			ft := kmsg.NewFetchRequestForgottenTopic()
			ft.Topic, ft.TopicID = topicOf()
			for range byte1() % 4 {
				ft.Partitions = append(ft.Partitions, int32(int8(byte1())))
			}
			req.ForgottenTopics = append(req.ForgottenTopics, ft)
		}
		resp := c.Do(req).(*kmsg.FetchResponse)
		switch resp.ErrorCode {
		case 0:
		case kerr.FetchSessionIDNotFound.Code, kerr.InvalidFetchSessionEpoch.Code, kerr.FetchSessionTopicIDError.Code:
			if len(resp.Topics) != 0 {
				t.Fatalf("%s with %d topics", errName(resp.ErrorCode), len(resp.Topics))
			}
		default:
			t.Fatalf("top-level error %s", errName(resp.ErrorCode))
		}
		// Close whatever session is left, so that the cache does not fill.
		if id != 0 {
			c.Do(sessionReq(v, id, -1))
		}
		if resp.SessionID != 0 && resp.SessionID != id {
			c.Do(sessionReq(v, resp.SessionID, -1))
		}
	})
}
