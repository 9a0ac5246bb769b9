package compattests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBadInput sends malformed and unsupported requests over raw TCP. Each
// bad frame must close its connection (or, where Kafka answers, get the
// error answer) without disturbing the broker: new connections and real
// clients still work and the process is still running.
func TestBadInput(t *testing.T) {
	const maxRequest = 1 << 20
	b := startBroker(t, "--max-request-bytes", fmt.Sprint(maxRequest))
	ctx := testContext(t, time.Minute)
	const name = "bad-input"
	created := createTopic(ctx, t, newAdmin(t, b), name, 1, nil)
	topic := topicRef{name, created.ID}

	// stillServes checks that a fresh connection gets an ApiVersions answer.
	stillServes := func(t *testing.T) {
		t.Helper()
		if !b.Alive() {
			t.Fatal("the broker process exited")
		}
		apiMaxVersions(t, dialRaw(t, b.Addr()))
	}
	header := func(key, version int16, flexible bool) []byte {
		return appendRequestHeader(nil, key, version, 1, flexible)
	}
	produceV9 := func() []byte {
		req := produceRequest(9, topic, 0, batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte("v")}}.build())
		return req.AppendTo(header(kmsg.Produce.Int16(), 9, true))
	}

	closes := []struct {
		name  string
		bytes []byte
	}{
		// The size alone is refused; the bytes that follow are never read.
		{"frame over max-request-bytes", append(binary.BigEndian.AppendUint32(nil, 2_000_000), bytes.Repeat([]byte{1}, 4096)...)},
		{"negative size", append(binary.BigEndian.AppendUint32(nil, uint32(0xfffffffb)), bytes.Repeat([]byte{1}, 16)...)},
		{"unknown API key", ktest.Frame(append(header(9999, 0, false), 0, 0, 0, 0))},
		{"truncated Produce v9", ktest.Frame(func() []byte { p := produceV9(); return p[:len(p)-40] }())},
		// 0xff forever is a varint that never ends where the
		// transactional ID's length should be.
		{"garbage Produce v9", ktest.Frame(append(header(kmsg.Produce.Int16(), 9, true), bytes.Repeat([]byte{0xff}, 64)...))},
		{"header shorter than its fixed part", ktest.Frame([]byte{0, 18, 0})},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, b.Addr())
			c.Write(tc.bytes)
			c.ExpectClosed()
			stillServes(t)
		})
	}

	// A client newer than the broker asks with a version the broker cannot
	// parse; Kafka answers in v0, with UNSUPPORTED_VERSION and its own
	// ranges, and keeps the connection so the client can ask again lower.
	t.Run("ApiVersions v127", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		body := appendRequestHeader(nil, kmsg.ApiVersions.Int16(), 127, 42, true)
		body = append(body, 0) // some body of an unknown shape
		c.Write(ktest.Frame(body))
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		c.Receive(resp, 42, rawTimeout)
		if !errors.Is(kerr.ErrorForCode(resp.ErrorCode), kerr.UnsupportedVersion) {
			t.Errorf("ApiVersions v127 answered error code %d, want %d (UNSUPPORTED_VERSION)", resp.ErrorCode, kerr.UnsupportedVersion.Code)
		}
		if len(resp.ApiKeys) == 0 {
			t.Fatal("ApiVersions v127 answered an empty list of APIs")
		}
		listed := false
		for _, k := range resp.ApiKeys {
			if k.ApiKey == kmsg.ApiVersions.Int16() && k.MinVersion == 0 && k.MaxVersion >= 3 {
				listed = true
			}
		}
		if !listed {
			t.Errorf("ApiVersions v127 answer does not list ApiVersions 0-3 or more: %+v", resp.ApiKeys)
		}
		apiMaxVersions(t, c) // the retry, on the same connection
	})

	// Produce v0-v2 may carry the old message formats, which PubG1 does
	// not store: such a message set is refused with
	// UNSUPPORTED_FOR_MESSAGE_FORMAT, an unknown topic with
	// UNKNOWN_TOPIC_OR_PARTITION, and nothing is written.
	t.Run("Produce v2", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(2)
		req.Acks, req.TimeoutMillis = -1, 5000
		for _, tn := range []string{name, "another-topic"} {
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = tn
			for p := range int32(2) {
				rp := kmsg.NewProduceRequestTopicPartition()
				rp.Partition = p
				rp.Records = batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte("old")}}.build()
				rp.Records[16] = 1 // the magic byte of a v1 message set
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		resp := c.Do(req).(*kmsg.ProduceResponse)
		if len(resp.Topics) != len(req.Topics) {
			t.Fatalf("Produce v2 for %d topics answered %d", len(req.Topics), len(resp.Topics))
		}
		for i, rt := range resp.Topics {
			if rt.Topic != req.Topics[i].Topic || len(rt.Partitions) != len(req.Topics[i].Partitions) {
				t.Fatalf("Produce v2 answer topic %d: %q with %d partitions, want %q with %d", i, rt.Topic, len(rt.Partitions), req.Topics[i].Topic, len(req.Topics[i].Partitions))
			}
			for j, rp := range rt.Partitions {
				want := kerr.UnsupportedForMessageFormat
				if rt.Topic != name || rp.Partition != 0 { // the topic has one partition
					want = kerr.UnknownTopicOrPartition
				}
				if rp.Partition != req.Topics[i].Partitions[j].Partition || !errors.Is(kerr.ErrorForCode(rp.ErrorCode), want) {
					t.Errorf("Produce v2 answer for %s/%d: error code %d, want %d", rt.Topic, rp.Partition, rp.ErrorCode, want.Code)
				}
			}
		}
		apiMaxVersions(t, c) // the connection is still usable
	})

	// Nothing was written by any of the above, and real clients work.
	t.Run("client after bad input", func(t *testing.T) {
		cl := newClient(t, b)
		ends, err := newAdmin(t, b).ListEndOffsets(ctx, name)
		if err != nil {
			t.Fatalf("ListEndOffsets: %v", err)
		}
		checkListed(t, "end after bad input", ends, name, 0, 0)
		var recs []*kgo.Record
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: name, Value: fmt.Appendf(nil, "fine %d", i)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("producing after bad input: %v", err)
		}
		got := consumeKgo(ctx, t, b, name, map[int32]int64{0: 0}, len(recs))
		if len(got) != len(recs) {
			t.Errorf("consumed %d records, produced %d", len(got), len(recs))
		}
		for i, r := range got[:min(len(got), len(recs))] {
			if r.Offset != int64(i) || !bytes.Equal(r.Value, recs[i].Value) {
				t.Errorf("offset %d holds %q, want %q at %d", r.Offset, r.Value, recs[i].Value, i)
			}
		}
		if !b.Alive() {
			t.Fatal("the broker process exited")
		}
	})
}
