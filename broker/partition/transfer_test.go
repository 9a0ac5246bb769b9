package partition

import (
	"bytes"
	"testing"
	"time"
)

// TestReplicatedAppendDuringTransfer appends while the leader tries to
// hand its leadership to a replica that is down, so the transfer cannot
// finish and the leader keeps leading. Every acknowledged batch must be in
// the log at the offset it was acknowledged with, including a producer's
// retry of a batch whose first attempt failed.
func TestReplicatedAppendDuringTransfer(t *testing.T) {
	rs := newReplicaSet(t)
	li, leader := rs.leader()
	target := (li + 1) % 3
	rs.stop(target)
	const pid = 77
	acked := map[int64][]byte{}
	seq := int32(0)
	for round := 0; round < 3; round++ {
		done := make(chan error, 1)
		go func() { done <- leader.TransferTo(rs.servers[target].ID, rs.servers[target].Address) }()
		moving := true
		for deadline := time.Now().Add(2 * time.Second); moving && time.Now().Before(deadline); {
			select {
			case <-done:
				moving = false
			default:
			}
			b := makeBatch(t, batchSpec{n: 2, producerID: pid, seq: seq})
			// A producer retries a batch until it is acknowledged.
			for giveUp := time.Now().Add(20 * time.Second); ; {
				r := appendAll(t, leader, [][]byte{append([]byte(nil), b...)})[0]
				if r.Err == nil {
					acked[r.BaseOffset] = b
					break
				}
				if time.Now().After(giveUp) {
					t.Fatalf("batch at sequence %d not acknowledged: %v", seq, r.Err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			seq += 2
		}
		if moving {
			<-done
		}
	}
	if !leader.IsLeader() {
		t.Fatal("the leader lost its leadership")
	}
	off := leader.Offsets()
	if want := int64(2 * len(acked)); off.HighWatermark != want {
		t.Errorf("high watermark %d after %d acknowledged batches of 2", off.HighWatermark, len(acked))
	}
	for base, b := range acked {
		res, err := leader.Read(base, 1, true, nil)
		if err != nil {
			t.Fatalf("read at %d: %v", base, err)
		}
		if len(res.Records) < len(b) || !bytes.Equal(res.Records[61:len(b)], b[61:]) {
			t.Fatalf("batch acknowledged at %d is not what was read there", base)
		}
	}
}
