package partition

import "github.com/pubg1/pubg1/broker/raftmux"

// NeedsForcedVoters reports whether an unclean election must force this
// replica's configuration (see raftlog.Store.ForceVoters): it votes,
// others of the group do not, and it does not lead.
func (p *Replicated) NeedsForcedVoters() bool {
	return raftmux.NeedsForcedVoters(p.r, p.opts.ID)
}
