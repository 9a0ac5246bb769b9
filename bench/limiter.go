package bench

import (
	"context"
	"time"
)

// Pace drives an open-loop send schedule: record seq is due at
// start + seq/rate, whether or not the records before it have been sent or
// acknowledged. It calls send for every record due before start+d (or
// until ctx ends), in order, with its sequence number and scheduled time,
// and returns how many it sent. A send that blocks (a full producer buffer,
// a stalled connection) does not move the schedule: the records that fell
// due meanwhile are sent at once afterwards with their original times, so
// a latency measured from the scheduled time charges the stall to every
// record it delayed (no coordinated omission).
//
// A rate of zero or less sends as fast as send returns, each record due
// when it is handed over.
func Pace(ctx context.Context, rate float64, start time.Time, d time.Duration, send func(seq int64, due time.Time)) int64 {
	end := start.Add(d)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var seq int64
	for ctx.Err() == nil {
		var due time.Time
		if rate > 0 {
			due = start.Add(time.Duration(float64(seq) / rate * float64(time.Second)))
			if !due.Before(end) {
				return seq
			}
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return seq
				}
			}
		} else {
			due = time.Now()
			if !due.Before(end) {
				return seq
			}
		}
		send(seq, due)
		seq++
	}
	return seq
}
