package broker_test

import (
	"errors"
	"testing"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStorageFailure injects a failing commit (a write or sync error) into
// the store of a running broker: the produce it covers is answered
// KAFKA_STORAGE_ERROR and is not readable, every later produce is refused
// too, even once the fault is gone (what the failed commit left on disk is
// unknown), and what was acknowledged before is still served.
func TestStorageFailure(t *testing.T) {
	store := storage.NewMemory()
	cfg := broker.DefaultConfig()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	b, err := broker.NewWithStore(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel), store)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	c := dial(t, b)
	topic := uniqueTopic(t, "")
	createTopic(t, c, topic, 1)
	if off := produce(t, c, topic, 0, newBatch(t, "before")); off != 0 {
		t.Fatalf("first record at offset %d", off)
	}

	produceCode := func(value string) int16 {
		resp := c.Do(produceReq(9, -1, topic, [16]byte{}, 0, newBatch(t, value))).(*kmsg.ProduceResponse)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	store.FailCommits(errors.New("injected write error"))
	if code := produceCode("during"); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce over a failing disk: code %d, want KAFKA_STORAGE_ERROR", code)
	}
	store.FailCommits(nil)
	if code := produceCode("after"); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce after a failed commit: code %d, want KAFKA_STORAGE_ERROR (the store must take no more data)", code)
	}
	if !errors.Is(store.Failed(), storage.ErrFailed) {
		t.Errorf("store.Failed() = %v, want ErrFailed", store.Failed())
	}
	p := fetchOne(t, c, topic, 0, 0)
	if p.ErrorCode != 0 || p.HighWatermark != 1 {
		t.Fatalf("fetch after the failure: code %d, high watermark %d; want 0 and 1", p.ErrorCode, p.HighWatermark)
	}
}
