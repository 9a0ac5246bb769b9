package broker_test

import (
	"strconv"
	"testing"

	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func initProducerID(t testing.TB, c *ktest.Conn, v int16, txnID *string) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = v
	req.TransactionalID = txnID
	req.TransactionTimeoutMillis = 60000
	return c.Do(req).(*kmsg.InitProducerIDResponse)
}

func TestInitProducerID(t *testing.T) {
	dir := t.TempDir()
	b1 := runBroker(t, brokertest.WithDataDir(dir))
	c1 := dial(t, b1)
	last := int64(-1)
	for v := int16(0); v <= 5; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			for range 3 {
				resp := initProducerID(t, c1, v, nil)
				if resp.ErrorCode != 0 || resp.ProducerEpoch != 0 {
					t.Fatalf("error %d, epoch %d", resp.ErrorCode, resp.ProducerEpoch)
				}
				if resp.ProducerID <= last {
					t.Fatalf("producer ID %d after %d", resp.ProducerID, last)
				}
				last = resp.ProducerID
			}
		})
	}

	// An idempotent producer asking to bump its epoch (KIP-360) gets a
	// fresh ID at epoch 0, as Kafka gives when there is no transactional ID.
	t.Run("epoch bump", func(t *testing.T) {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 4
		req.TransactionTimeoutMillis = 60000
		req.ProducerID, req.ProducerEpoch = last, 0
		resp := c1.Do(req).(*kmsg.InitProducerIDResponse)
		if resp.ErrorCode != 0 || resp.ProducerID <= last || resp.ProducerEpoch != 0 {
			t.Fatalf("error %d, producer ID %d epoch %d after %d", resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch, last)
		}
		last = resp.ProducerID
	})

	t.Run("transactional ID", func(t *testing.T) {
		for v := int16(0); v <= 5; v++ {
			resp := initProducerID(t, c1, v, ptr("my-txn"))
			if resp.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
				t.Fatalf("v%d: error %d, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", v, resp.ErrorCode)
			}
			if resp.ProducerID != -1 || resp.ProducerEpoch != -1 {
				t.Fatalf("v%d: producer ID %d epoch %d on error", v, resp.ProducerID, resp.ProducerEpoch)
			}
		}
	})

	// IDs are never handed out twice, also across a restart.
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := runBroker(t, brokertest.WithDataDir(dir))
	c2 := dial(t, b2)
	for range 3 {
		resp := initProducerID(t, c2, 4, nil)
		if resp.ErrorCode != 0 || resp.ProducerEpoch != 0 {
			t.Fatalf("after restart: error %d, epoch %d", resp.ErrorCode, resp.ProducerEpoch)
		}
		if resp.ProducerID <= last {
			t.Fatalf("after restart: producer ID %d, but %d was already given", resp.ProducerID, last)
		}
		last = resp.ProducerID
	}
}
