package broker

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/pubg1/pubg1/broker/partition"
)

// TestTxnVerifierKeepsOrder: batches of a producer that arrive while the
// first of its transaction in a partition is being verified are let
// through after it, in the order they came, whenever the verification
// answers; with its error if it refuses.
func TestTxnVerifierKeepsOrder(t *testing.T) {
	var v txnVerifier
	p := partition.Remote{}
	var mu sync.Mutex
	var order []int
	var verifications []func(error)
	verify := func(done func(error)) { verifications = append(verifications, done) }
	for i := range 5 {
		v.append(p, 7, func(err error) {
			if err != nil {
				t.Errorf("batch %d: %v", i, err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}, verify)
	}
	if len(verifications) != 1 {
		t.Fatalf("%d verifications for one producer's batches in one partition, want 1", len(verifications))
	}
	if len(order) != 0 {
		t.Fatalf("batches %v went through before the verification answered", order)
	}
	// Another producer is verified on its own.
	v.append(p, 8, func(error) {}, verify)
	if len(verifications) != 2 {
		t.Fatalf("%d verifications, want one per producer", len(verifications))
	}
	verifications[0](nil)
	if !slices.Equal(order, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("batches went through in the order %v", order)
	}
	refused := errors.New("not in the transaction")
	var got []error
	for range 2 {
		v.append(p, 9, func(err error) { got = append(got, err) }, verify)
	}
	verifications[2](refused)
	if len(got) != 2 || !errors.Is(got[0], refused) || !errors.Is(got[1], refused) {
		t.Fatalf("a refused verification answered %v", got)
	}
}
