package broker

import (
	"context"

	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) initProducerIDAPI() kproto.API {
	return kproto.API{Key: kmsg.InitProducerID.Int16(), MinVersion: 0, MaxVersion: 5, Handle: handle(b.initProducerID)}
}

// initProducerID gives an idempotent producer a fresh ID at epoch 0, also
// when it asks to bump the epoch of the ID it has (KIP-360): a fresh ID has
// no sequence state anywhere, which is what the bump is for. Transactional
// IDs need a transaction coordinator, which PubG1 does not have.
func (b *Broker) initProducerID(_ context.Context, _ *kproto.Request, r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp
	}
	id, err := b.allocateProducerID()
	if err != nil {
		b.log.Error().Err(err).Msg("allocating producer ID")
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
