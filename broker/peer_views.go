package broker

import (
	"context"
	"sync"
	"time"
)

// The failure detector of one broker sees only its own links. When two
// brokers cannot reach each other but both still reach a third (a bridge),
// each finds the other down although it is alive and, if it leads, still
// commits with the third's vote. Standing for election against such a
// leader only moves the leadership to the other side, and back. So before
// a broker takes a leader for gone, it asks its live peers which brokers
// they have heard from in the last moment (their views), and leaves a
// leader alone that a replica of the same group still hears. A frozen
// broker is silent to everyone at once, so no view holds it up.

// peerViews caches the other brokers' views for a short while.
type peerViews struct {
	mu    sync.Mutex
	at    time.Time
	views map[int32]map[int32]bool // peer -> brokers it heard from recently
}

// viewsFresh is how long fetched views are used.
const viewsFresh = 250 * time.Millisecond

// peerViews returns, per peer the failure detector finds up, the brokers
// that peer has heard from recently. It asks only while this broker finds some broker
// down (nil otherwise), every peer at once, each for at most half an elect
// tick; a peer that does not answer in time has no view.
func (b *Broker) peerViews(up, down map[int32]bool) map[int32]map[int32]bool {
	anyDown := false
	for _, d := range down {
		anyDown = anyDown || d
	}
	if !anyDown {
		return nil
	}
	v := &b.views
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.at) < viewsFresh {
		return v.views
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timings.ElectTick/2)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	views := make(map[int32]map[int32]bool)
	for id := range b.cfg.Peers {
		if id == b.cfg.NodeID || !up[id] {
			continue
		}
		wg.Go(func() {
			ids, err := b.ctrl.PeerView(ctx, id)
			if err != nil {
				return
			}
			set := make(map[int32]bool, len(ids))
			for _, x := range ids {
				set[x] = true
			}
			mu.Lock()
			views[id] = set
			mu.Unlock()
		})
	}
	wg.Wait()
	v.views, v.at = views, time.Now()
	return views
}

// reachedElsewhere reports whether a broker of members other than this
// one and broker id itself has heard from broker id recently (views).
func (b *Broker) reachedElsewhere(id int32, members []int32, views map[int32]map[int32]bool) bool {
	for _, m := range members {
		if m != b.cfg.NodeID && m != id && views[m][id] {
			return true
		}
	}
	return false
}
