package remedy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/medic-sidecar/medic/internal/atomicfile"
	"github.com/medic-sidecar/medic/internal/statefile"
)

// savedIncident is an open incident as persisted in stateDir/incidents.json.
type savedIncident struct {
	Key         string            `json:"key"`
	ID          string            `json:"id"`
	Alert       string            `json:"alert"`
	Labels      map[string]string `json:"labels,omitempty"`
	Ladder      []string          `json:"ladder"`
	Start       time.Time         `json:"startedAt"`
	State       State             `json:"state"`
	Step        int               `json:"step"`
	Round       int               `json:"round"`
	ExhaustedAt time.Time         `json:"exhaustedAt,omitzero"`
	FixedBy     string            `json:"fixedBy,omitempty"`
	Attempts    []AttemptView     `json:"attempts,omitempty"`
}

type incidentFile struct {
	Version   int             `json:"version"`
	Incidents []savedIncident `json:"incidents"`
}

// incidentsVersion is the format of incidents.json this medic reads and writes.
const incidentsVersion = 1

// keepAttempts bounds the attempts persisted per incident.
const keepAttempts = 50

// loadIncidents reads the persisted open incidents; a missing file is no
// incidents, an unreadable one is logged and moved aside (never fatal: a
// bad state file must not keep medic from starting).
func loadIncidents(path string, log *slog.Logger, state *StateHealth, now time.Time) map[string]savedIncident {
	out := map[string]savedIncident{}
	if path == "" {
		return out
	}
	var f incidentFile
	data, err := statefile.Load(path, incidentsVersion, &f)
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	if err != nil {
		msg := fmt.Sprintf("incidents.json unusable (%v); starting without the open incidents it held", err)
		bad, aerr := moveIncidentsAside(path, data, now)
		if aerr != nil {
			msg += fmt.Sprintf("; could not move it aside: %v", aerr)
		} else {
			msg += "; moved to " + bad
		}
		log.Error("persisted incidents unreadable; starting without them", "path", path, "movedTo", bad, "err", err)
		state.Note(FileIncidents, msg, now)
		return out
	}
	for _, sv := range f.Incidents {
		if sv.Key != "" {
			out[sv.Key] = sv
		}
	}
	if len(out) > 0 {
		log.Info("incidents restored from the state dir; each resumes when its alert fires again", "count", len(out), "path", path)
	}
	return out
}

// moveIncidentsAside keeps an unusable incidents.json aside and removes
// it: the incidents it held are given up, and the next save starts a new
// file.
func moveIncidentsAside(path string, data []byte, now time.Time) (string, error) {
	bad, err := statefile.MoveAside(path, data, now)
	if err != nil || data == nil {
		return bad, err
	}
	return bad, os.Remove(path)
}

// save writes the open incidents (and restored ones not yet claimed) to
// Options.StatePath. Called with e.mu held.
func (e *Engine) save(now time.Time) {
	if e.o.StatePath == "" {
		return
	}
	data, err := json.MarshalIndent(e.core.savedState(), "", "  ")
	if err == nil {
		err = atomicfile.Write(e.o.StatePath, data, 0o600)
	}
	if e.o.State.Report(FileIncidents, err, now) {
		if err != nil {
			e.o.Logger.Error("persisting incidents failed; they live in memory only", "path", e.o.StatePath, "err", err)
		} else {
			e.o.Logger.Info("persisting incidents works again", "path", e.o.StatePath)
		}
	}
}

func (inc *incident) saved() savedIncident {
	att := inc.attempts
	if len(att) > keepAttempts {
		att = att[len(att)-keepAttempts:]
	}
	return savedIncident{Key: inc.key, ID: inc.id, Alert: inc.alert, Labels: maps.Clone(inc.labels), Ladder: inc.ladder,
		Start: inc.start, State: inc.state, Step: inc.step, Round: inc.round, ExhaustedAt: inc.exhaustedAt,
		FixedBy: inc.fixedBy, Attempts: append([]AttemptView(nil), att...)}
}

// restore takes over a persisted incident's identity and history and
// returns the ladder index to resume at. A ladder that changed since (the
// config was edited) starts again from step 1.
func (inc *incident) restore(sv savedIncident) (from int) {
	inc.id, inc.start, inc.round = sv.ID, sv.Start, max(sv.Round, 1)
	inc.attempts = append([]AttemptView(nil), sv.Attempts...)
	for i := range inc.attempts {
		if inc.attempts[i].Result == "running" {
			inc.attempts[i].Result, inc.attempts[i].Reason = ResultFailed, "interrupted"
			inc.attempts[i].Message = "medic stopped during this attempt"
		}
	}
	if !slices.Equal(sv.Ladder, inc.ladder) {
		return 0
	}
	if sv.State == StateExhausted && !sv.ExhaustedAt.IsZero() {
		inc.state, inc.exhaustedAt, inc.step = StateExhausted, sv.ExhaustedAt, sv.Step
		if inc.retry > 0 {
			inc.nextAt = inc.exhaustedAt.Add(inc.retry)
		}
		if inc.step > 0 && inc.step <= len(inc.ladder) {
			inc.action = inc.ladder[inc.step-1]
		}
		return 0
	}
	if sv.Step >= 1 && sv.Step <= len(inc.ladder) {
		return sv.Step - 1
	}
	return 0
}
