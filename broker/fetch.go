package broker

import (
	"context"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch v0-v3 expect message format v0/v1, which PubG1 does not store.
func (b *Broker) fetchAPI() kproto.API {
	return kproto.API{Key: kmsg.Fetch.Int16(), MinVersion: 4, MaxVersion: 18, Handle: b.fetch, Reject: rejectFetch}
}

func rejectFetch(req kmsg.Request, code int16) kmsg.Response {
	r := req.(*kmsg.FetchRequest)
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	resp.ErrorCode = code
	for _, rt := range r.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// fetchPart is one partition of a Fetch request, or of its session.
type fetchPart struct {
	p        partition.Partition // nil when err is set
	err      error
	offset   int64
	maxBytes int
	out      *kmsg.FetchResponseTopicPartition
	// key names the partition in a fetch session; leaderEpoch is the
	// client's current leader epoch; topicName and topicID are the topic
	// the request resolved to (empty when unknown).
	key         sessionKey
	leaderEpoch int32
	topicName   string
	topicID     [16]byte
}

// fetchRequest is a Fetch being answered, possibly after waiting.
type fetchRequest struct {
	resp     *kmsg.FetchResponse
	parts    []fetchPart
	minBytes int
	maxBytes int
	// committed is read_committed isolation: reads stop at the last
	// stable offset and come with the aborted transactions.
	committed bool
	// finish, when set, completes the response just before it is sent: it
	// creates a fetch session, or picks what an incremental fetch returns
	// (fetch_session.go).
	finish func()
}

// fetch answers a Fetch. Fetch v7+ carries a session ID and epoch
// (KIP-227): epoch 0 (INITIAL) and -1 (FINAL) ask for a full fetch and
// close the session they name, and 0 also asks for a new session; any
// other epoch is an incremental fetch of an existing session.
func (b *Broker) fetch(ctx context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.FetchRequest)
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	f := &fetchRequest{resp: resp, minBytes: int(r.MinBytes), maxBytes: int(r.MaxBytes), committed: r.IsolationLevel == 1}
	if r.Version < 3 || f.maxBytes <= 0 {
		f.maxBytes = int(^uint(0) >> 1)
	}
	switch {
	case r.Version < 7:
		b.fullFetch(f, r)
	case r.SessionEpoch != fetchEpochInitial && r.SessionEpoch != fetchEpochFinal:
		if err := b.incrementalFetch(f, r); err != nil {
			// As Kafka: a top-level error and no partitions.
			resp.ErrorCode = errorCode(err)
			respond(resp)
			return
		}
	default:
		if r.SessionID != 0 {
			b.sessions.remove(r.SessionID)
		}
		b.fullFetch(f, r)
		if r.SessionEpoch == fetchEpochInitial {
			byTopicID := r.Version >= 13
			f.finish = func() { resp.SessionID = b.sessions.create(byTopicID, f.parts) }
		}
	}
	b.answerFetch(ctx, f, time.Duration(r.MaxWaitMillis)*time.Millisecond, respond)
}

// fullFetch fills f with the partitions the request lists, in its order.
func (b *Broker) fullFetch(f *fetchRequest, r *kmsg.FetchRequest) {
	byTopicID := r.Version >= 13
	resp := f.resp
	resp.Topics = make([]kmsg.FetchResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		st.Default()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t, terr := b.topicByRequest(byTopicID, rt.Topic, rt.TopicID)
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			sp.Default()
			sp.Partition = rp.Partition
			fp := fetchPart{err: terr, offset: rp.FetchOffset, maxBytes: int(rp.PartitionMaxBytes), out: sp,
				key: newSessionKey(byTopicID, rt.Topic, rt.TopicID, rp.Partition), leaderEpoch: rp.CurrentLeaderEpoch}
			if fp.err == nil {
				fp.topicName, fp.topicID = t.name, t.id
				if fp.p, fp.err = leaderPartition(t, rp.Partition); fp.err == nil {
					fp.err = checkLeaderEpoch(rp.CurrentLeaderEpoch, fp.p.Offsets().LeaderEpoch)
				}
			}
			f.parts = append(f.parts, fp)
		}
	}
}

// answerFetch answers at once when there is enough data, an error, or no
// wait allowed; otherwise it waits on a goroutine for the high watermark of
// any of the partitions to move, rereading each time, until MinBytes are
// available or the wait passes.
func (b *Broker) answerFetch(ctx context.Context, f *fetchRequest, wait time.Duration, respond func(kmsg.Response)) {
	send := func() {
		if f.finish != nil {
			f.finish()
		}
		respond(f.resp)
	}
	if wait <= 0 || f.minBytes <= 0 {
		f.read()
		send()
		return
	}
	// Watch before the first read so that an append between the read and
	// the wait still wakes the waiter.
	wake := make(chan struct{}, 1)
	for _, fp := range f.parts {
		if fp.p != nil {
			fp.p.Watch(wake)
		}
	}
	unwatch := func() {
		for _, fp := range f.parts {
			if fp.p != nil {
				fp.p.Unwatch(wake)
			}
		}
	}
	if f.read() {
		unwatch()
		send()
		return
	}
	started := b.goFunc(func() {
		defer unwatch()
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			select {
			case <-wake:
				if f.read() {
					send()
					return
				}
			case <-timer.C:
				f.read()
				send()
				return
			case <-ctx.Done():
				// The connection or the broker is closing: the answer
				// goes nowhere, so it changes no session either.
				respond(f.resp)
				return
			}
		}
	})
	if !started {
		unwatch()
		respond(f.resp)
	}
}

// read fills the response from the partitions and reports whether it is
// ready to send: MinBytes reached or a partition has an error.
func (f *fetchRequest) read() bool {
	total := 0
	ready := false
	for i := range f.parts {
		fp := &f.parts[i]
		sp := fp.out
		// Kafka always sends a record set, empty when there is no data;
		// librdkafka rejects a null one.
		sp.RecordBatches = []byte{}
		if fp.err != nil {
			sp.ErrorCode = errorCode(fp.err)
			ready = true
			continue
		}
		limit := min(fp.maxBytes, f.maxBytes-total)
		read := fp.p.Read
		if f.committed {
			read = fp.p.ReadCommitted
		}
		res, err := read(fp.offset, max(limit, 0), total == 0, nil)
		if err != nil {
			// Kafka reports unknown (-1) offsets with a partition error.
			sp.ErrorCode = errorCode(err)
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			ready = true
			continue
		}
		sp.ErrorCode = 0
		sp.HighWatermark = res.HighWatermark
		sp.LastStableOffset = res.LastStable
		sp.LogStartOffset = res.LogStart
		if f.committed {
			sp.AbortedTransactions = make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, len(res.Aborted))
			for k, a := range res.Aborted {
				sp.AbortedTransactions[k] = kmsg.FetchResponseTopicPartitionAbortedTransaction{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset}
			}
		}
		if len(res.Records) > 0 {
			sp.RecordBatches = res.Records
		}
		total += len(res.Records)
	}
	return ready || total >= f.minBytes
}

// checkLeaderEpoch compares the epoch a client believes current (-1: no
// opinion) with the partition's.
func checkLeaderEpoch(client, current int32) error {
	switch {
	case client < 0 || client == current:
		return nil
	case client < current:
		return partition.ErrFencedLeaderEpoch
	default:
		return partition.ErrUnknownLeaderEpoch
	}
}
