package partition

import "sync"

// watchSet holds the channels of readers waiting for the high watermark.
type watchSet struct {
	mu sync.Mutex
	m  map[chan<- struct{}]struct{}
}

func (w *watchSet) add(ch chan<- struct{}) {
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[chan<- struct{}]struct{})
	}
	w.m[ch] = struct{}{}
	w.mu.Unlock()
}

func (w *watchSet) remove(ch chan<- struct{}) {
	w.mu.Lock()
	delete(w.m, ch)
	w.mu.Unlock()
}

// notify signals every watcher without blocking.
func (w *watchSet) notify() {
	w.mu.Lock()
	for ch := range w.m {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
}
