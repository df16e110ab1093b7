package tcpconn

import (
	"math"
	"time"
)

// Quality is what the connection quality score of one peer is computed
// from, over one probe interval.
type Quality struct {
	// Established connections to the peer.
	Established int
	// Troubled connections: SYN_SENT (cannot connect), CLOSE_WAIT (the peer
	// closed, the agent did not), FIN_WAIT1, LAST_ACK, CLOSING (a close the
	// peer does not acknowledge). TIME_WAIT and FIN_WAIT2 are the normal
	// residue of a close and do not count.
	Troubled int
	// RetransSegs and SentSegs are the segments retransmitted and sent
	// (retransmissions included) during the interval, over all connections.
	RetransSegs uint64
	SentSegs    uint64
	// RTT and RTTVar are the kernel's smoothed RTT and its mean deviation,
	// averaged over the established connections; zero when unknown.
	RTT    time.Duration
	RTTVar time.Duration
}

// Score constants (see Score).
const (
	// MinSegments is the floor of the retransmit-rate denominator, so one
	// retransmitted keepalive on an idle connection does not read as 50% loss.
	MinSegments = 10
	// RetransWeight: a 5% retransmit rate halves the score.
	RetransWeight = 20
	// MinRTT is the floor of the RTT in the variance ratio, so loopback's
	// microsecond jitter counts as none.
	MinRTT = time.Millisecond
	// NormalVariance: Linux starts every connection with RTTVar = RTT/2, so
	// a ratio up to 0.5 is normal.
	NormalVariance = 0.5
)

// Score is the connection quality of one peer in [0, 1]:
//
//	score = S × L × J, and 0 with no established connection, where
//	S = established / (established + troubled)            connection states
//	r = retransSegs / max(sentSegs, MinSegments), at most 1
//	L = 1 / (1 + RetransWeight·r)                         retransmit rate
//	v = rttVar / max(rtt, MinRTT)
//	J = 1 / (1 + max(0, v − NormalVariance))              RTT deviation
//
// Examples: one healthy connection scores 1; one healthy and one stuck in
// CLOSE_WAIT 0.5; 5% of segments retransmitted 0.5; RTT variance 1.5× the
// RTT 0.5.
func Score(q Quality) float64 {
	if q.Established <= 0 {
		return 0
	}
	s := float64(q.Established) / float64(q.Established+max(q.Troubled, 0))
	r := float64(q.RetransSegs) / float64(max(q.SentSegs, MinSegments))
	r = math.Min(r, 1)
	l := 1 / (1 + RetransWeight*r)
	j := 1.0
	if q.RTT > 0 {
		v := float64(q.RTTVar) / float64(max(q.RTT, MinRTT))
		j = 1 / (1 + math.Max(0, v-NormalVariance))
	}
	return math.Max(0, math.Min(1, s*l*j))
}
