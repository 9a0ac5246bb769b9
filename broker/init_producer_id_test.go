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

	// A transactional ID keeps its producer ID; each InitProducerId bumps
	// the epoch, fencing the producers before.
	t.Run("transactional ID", func(t *testing.T) {
		findTxnCoordinator(t, c1, "my-txn", 1)
		var pid int64 = -1
		for v := int16(0); v <= 5; v++ {
			resp := initProducerID(t, c1, v, ptr("my-txn"))
			if resp.ErrorCode != 0 || resp.ProducerEpoch != v || (pid >= 0 && resp.ProducerID != pid) {
				t.Fatalf("v%d: error %d, producer ID %d epoch %d (first ID %d)", v, resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch, pid)
			}
			pid = resp.ProducerID
		}
		for _, tc := range []struct {
			v    int16
			want int16
		}{{3, kerr.InvalidProducerEpoch.Code}, {4, kerr.ProducerFenced.Code}} {
			req := kmsg.NewPtrInitProducerIDRequest()
			req.Version, req.TransactionalID, req.TransactionTimeoutMillis = tc.v, ptr("my-txn"), 60000
			req.ProducerID, req.ProducerEpoch = pid, 1 // an older producer
			if resp := c1.Do(req).(*kmsg.InitProducerIDResponse); resp.ErrorCode != tc.want {
				t.Errorf("v%d, a fenced epoch: error %s, want %s", tc.v, errName(resp.ErrorCode), errName(tc.want))
			}
		}
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version, req.TransactionalID, req.TransactionTimeoutMillis = 4, ptr("my-txn"), 16*60*1000
		if resp := c1.Do(req).(*kmsg.InitProducerIDResponse); resp.ErrorCode != kerr.InvalidTransactionTimeout.Code {
			t.Errorf("a timeout above the maximum: error %s, want INVALID_TRANSACTION_TIMEOUT", errName(resp.ErrorCode))
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
