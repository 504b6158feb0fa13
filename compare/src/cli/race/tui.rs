//! The race on a terminal (ratatui over crossterm): a title, two lines per
//! lane (its clock and step, then a bar of its steps so far on its own
//! time scale, so a process's microseconds show their steps as well as a
//! Linux guest's seconds), and the table once every lane has ended. Fits
//! 80x24 with five lanes.

use std::time::Duration;

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use virtlab_compare::launch::Env;
use virtlab_compare::report::fmt_us;

use super::{stop_asked, LaneState, Race};

/// The narrowest terminal the race draws in.
const MIN_WIDTH: u16 = 60;

/// The rows `lanes` lanes need: a title, three per lane, the table (a
/// heading and a row per lane) and a line of keys.
fn rows_needed(lanes: usize) -> u16 {
    u16::try_from(4 * lanes + 3).unwrap_or(u16::MAX)
}

/// Refuses a terminal too small for `lanes` lanes, saying the size needed.
pub(super) fn check_size(lanes: usize) -> anyhow::Result<()> {
    let (w, h) = ratatui::crossterm::terminal::size().context("cannot read the terminal's size")?;
    let need = rows_needed(lanes);
    if w < MIN_WIDTH || h < need {
        anyhow::bail!(
            "the race of {lanes} lane(s) needs a terminal of at least {MIN_WIDTH}x{need} (columns x rows); this one is \
             {w}x{h}: enlarge it, race fewer lanes, or pipe the output for plain lines (`virtlab race ... | cat`)"
        );
    }
    Ok(())
}

/// The two colours a lane's steps alternate between.
fn colours(env: Env) -> (Color, Color) {
    match env {
        Env::Native => (Color::Blue, Color::LightBlue),
        Env::Container => (Color::Green, Color::LightGreen),
        Env::VmMiniUart => (Color::Red, Color::LightRed),
        Env::VmMiniPv => (Color::Yellow, Color::LightYellow),
        _ => (Color::Cyan, Color::LightCyan),
    }
}

/// Shows the race until `q` (or Ctrl-C, Esc, SIGTERM); returns whether it
/// was stopped before every lane had ended.
pub(super) fn show(race: &mut Race) -> anyhow::Result<bool> {
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = (|| -> anyhow::Result<bool> {
        loop {
            race.pump(Duration::from_millis(20));
            terminal.draw(|f| draw(f, race)).context("cannot draw")?;
            if stop_asked() {
                return Ok(!race.finished());
            }
            if !event::poll(Duration::from_millis(20)).context("cannot read the keyboard")? {
                continue;
            }
            let Event::Key(key) = event::read().context("cannot read the keyboard")? else { continue };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(!race.finished()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(!race.finished()),
                KeyCode::Char(' ') | KeyCode::Enter => race.show_next(),
                _ => {}
            }
        }
    })();
    ratatui::restore();
    result
}

/// One frame.
fn draw(f: &mut Frame, race: &Race) {
    let area = f.area();
    let need = rows_needed(race.lanes.len());
    if area.width < MIN_WIDTH || area.height < need {
        let say = format!(
            "the race needs at least {MIN_WIDTH}x{need}; this terminal is {}x{}: make it bigger (q stops)",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(say).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return;
    }
    let n = race.lanes.len();
    let mut constraints = vec![Constraint::Length(1)];
    constraints.extend(std::iter::repeat_n(Constraint::Length(3), n));
    constraints.push(Constraint::Min(1));
    constraints.push(Constraint::Length(1));
    let parts = Layout::vertical(constraints).split(area);

    let title = format!("virtlab race: `{}`, each lane on its own time scale", race.workload);
    f.render_widget(Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)), parts[0]);
    for i in 0..n {
        draw_lane(f, &race.view(i), parts[1 + i]);
    }
    if race.all_shown() {
        f.render_widget(Paragraph::new(race.table()), parts[1 + n]);
    }
    let keys = match (race.all_shown(), race.shown.is_some()) {
        (true, _) => "every lane has ended: q leaves",
        (false, true) => "space or Enter: every lane's next step   q: stop every lane and leave",
        (false, false) => "q: stop every lane and leave",
    };
    f.render_widget(Paragraph::new(keys).style(Style::default().add_modifier(Modifier::DIM)), parts[2 + n]);
}

/// A lane's two lines: name, clock and step; then the bar of its steps.
fn draw_lane(f: &mut Frame, lane: &LaneState, area: Rect) {
    let (a, b) = colours(lane.env);
    let elapsed = lane.elapsed();
    let head = Line::from(vec![
        Span::styled(format!("{:<13}", lane.env.name()), Style::default().fg(a).add_modifier(Modifier::BOLD)),
        Span::raw(format!("{:>11}  ", fmt_us(elapsed.as_secs_f64() * 1e6))),
        Span::raw(lane.status()),
    ]);
    let width = usize::from(area.width.saturating_sub(2));
    let bar = Line::from(std::iter::once(Span::raw("  ")).chain(bar(lane, width, (a, b))).collect::<Vec<_>>());
    f.render_widget(Paragraph::new(vec![head, bar]), area);
}

/// The steps so far as coloured runs of `width` cells in all, each as
/// long as its share of the lane's time, with its name where it fits
/// (the colours alternate, so that steps too short to name still show).
fn bar(lane: &LaneState, width: usize, (a, b): (Color, Color)) -> Vec<Span<'static>> {
    let total = lane.elapsed().as_secs_f64();
    if total <= 0.0 || lane.phases.is_empty() {
        return Vec::new();
    }
    let x = |at: Duration| ((at.as_secs_f64() / total) * width as f64).round().min(width as f64) as usize;
    let mut spans = Vec::new();
    for (k, (name, start)) in lane.phases.iter().enumerate() {
        let end = lane.phases.get(k + 1).map(|(_, s)| *s).unwrap_or(lane.elapsed());
        let w = x(end).saturating_sub(x(*start));
        if w == 0 {
            continue;
        }
        // The name where it fits whole, else the colour alone.
        let text = if name.chars().count() < w { format!("{name:<w$}") } else { " ".repeat(w) };
        let bg = if k % 2 == 0 { a } else { b };
        spans.push(Span::styled(text, Style::default().bg(bg).fg(Color::Black)));
    }
    spans
}
