package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Metadata changes: a handler proposes a command to the metadata group and
// waits until this broker's catalog reflects it.

// metadataWait bounds how long a handler waits for a committed metadata
// change to reach this broker's catalog.
const metadataWait = 15 * time.Second

// proposeUntilApplied proposes cmd again until the metadata group has
// applied it; it gives up, returning false, when the broker closes.
func (b *Broker) proposeUntilApplied(cmd *cluster.Command) bool {
	for b.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		_, err := b.ctrl.Propose(ctx, cmd)
		cancel()
		if err == nil {
			return true
		}
		b.log.Debug().Err(err).Str("command", cmd.Kind).Msg("metadata proposal pending")
	}
	return false
}

// propose applies a metadata command and turns its error into the broker's.
func (b *Broker) propose(cmd *cluster.Command) (cluster.Result, error) {
	ctx, cancel := context.WithTimeout(b.ctx, metadataWait)
	defer cancel()
	res, err := b.ctrl.Propose(ctx, cmd)
	if err != nil {
		return res, fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
	}
	switch err := res.Error(); {
	case err == nil:
		return res, nil
	case errors.Is(err, cluster.ErrTopicExists):
		return res, fmt.Errorf("%w: %w", ErrTopicExists, err)
	case errors.Is(err, cluster.ErrTopicCollision):
		return res, fmt.Errorf("%w: %w", ErrInvalidTopic, err)
	case errors.Is(err, cluster.ErrUnknownTopic):
		return res, fmt.Errorf("%w: %w", ErrUnknownTopic, err)
	default:
		return res, err
	}
}

// awaitCatalog waits until the local catalog reflects a committed change.
func (b *Broker) awaitCatalog(done func() bool) error {
	return b.awaitCatalogUntil(time.Now().Add(metadataWait), done)
}

// awaitLeaders waits, until deadline at the latest, for every partition of
// topic id to have a leader in this broker's catalog. Kafka answers
// CreateTopics and CreatePartitions with leaders in place, so that a
// client producing right after finds them; here the replicas elect them
// once their groups start, a few tens of milliseconds later. It does not
// fail: the topic exists either way, and the leaders follow.
func (b *Broker) awaitLeaders(id [16]byte, deadline time.Time) {
	_ = b.awaitCatalogUntil(deadline, func() bool {
		t := b.topics.getID(id)
		if t == nil {
			return true // deleted meanwhile
		}
		for _, l := range t.leaders {
			if l.Leader < 0 {
				return false
			}
		}
		return true
	})
}

// awaitCatalogUntil waits until done reports true or deadline passes.
func (b *Broker) awaitCatalogUntil(deadline time.Time, done func() bool) error {
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: metadata change not applied on this broker yet", kerr.RequestTimedOut)
		}
		select {
		case <-b.ctx.Done():
			return ErrClosed
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
