package broker

import (
	"context"
	"regexp"

	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientSoftware is the pattern KIP-511 requires of client software names
// and versions.
var clientSoftware = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

func (b *Broker) apiVersionsAPI() kproto.API {
	return kproto.API{Key: kmsg.ApiVersions.Int16(), MinVersion: 0, MaxVersion: 4, Handle: handle(b.apiVersions)}
}

func (b *Broker) apiVersions(_ context.Context, req *kproto.Request, r *kmsg.ApiVersionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ApiVersionsResponse)
	if r.Version >= 3 && (!clientSoftware.MatchString(r.ClientSoftwareName) || !clientSoftware.MatchString(r.ClientSoftwareVersion)) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	resp.ApiKeys = b.registry.Versions()
	if r.Version >= 3 {
		// Transactions version 2 (KIP-890) is always on: clients that
		// know it bump the epoch per transaction and add partitions with
		// their produce requests.
		resp.SupportedFeatures = []kmsg.ApiVersionsResponseSupportedFeature{{Name: featureTxnVersion, MinVersion: 0, MaxVersion: txnVersion}}
		resp.FinalizedFeaturesEpoch = 1
		resp.FinalizedFeatures = []kmsg.ApiVersionsResponseFinalizedFeature{{Name: featureTxnVersion, MinVersionLevel: txnVersion, MaxVersionLevel: txnVersion}}
	}
	return resp
}

// The transaction.version feature this broker finalizes.
const (
	featureTxnVersion       = "transaction.version"
	txnVersion        int16 = 2
)
