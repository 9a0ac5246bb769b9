package storage

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// TestCommitterFailedRound checks that a failed commit reaches the Done of
// every Write in its round, and only that round.
func TestCommitterFailedRound(t *testing.T) {
	boom := errors.New("boom")
	release := make(chan struct{})
	rounds := 0
	c := startCommitter(checkWrite, func(ws []*Write) error {
		rounds++
		switch rounds {
		case 1:
			<-release // hold the first round so the next Writes pile up
		case 2:
			return boom
		}
		return nil
	})
	defer c.close()

	var wg sync.WaitGroup
	errs := make([]error, 4)
	submit := func(i int) {
		wg.Add(1)
		c.submit(&Write{KVs: []KV{{Key: []byte{byte(i)}, Value: []byte("v")}}, Done: func(err error) {
			errs[i] = err
			wg.Done()
		}})
	}
	submit(0)
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 0 {
			break // the committer took write 0 and is blocked in round 1
		}
		runtime.Gosched()
	}
	submit(1)
	submit(2)
	close(release)
	wg.Wait()
	submit(3)
	wg.Wait()

	if errs[0] != nil || errs[3] != nil {
		t.Errorf("rounds 1 and 3: %v, %v; want nil", errs[0], errs[3])
	}
	for _, i := range []int{1, 2} {
		if !errors.Is(errs[i], boom) {
			t.Errorf("write %d in the failed round: %v, want boom", i, errs[i])
		}
	}
}
