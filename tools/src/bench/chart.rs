//! An SVG chart of a run (`--svg`): throughput per second above, p50/p99 latency per second
//! below, drawn with plotters from the summary's timeline.

use std::path::Path;

use plotters::prelude::*;

use super::stats::{Sample, Summary};

/// Records per second of each sample (samples are about one second apart; the last is shorter).
pub fn throughput(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut prev = 0.0;
    samples
        .iter()
        .map(|s| {
            let dt = (s.t - prev).max(0.1);
            prev = s.t;
            (s.t, s.records as f64 / dt)
        })
        .collect()
}

/// Writes the chart of `summary` to `path`.
pub fn write_svg(path: &Path, summary: &Summary) -> anyhow::Result<()> {
    let samples = &summary.timeline;
    let rates = throughput(samples);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(320);
    let title = format!(
        "{} · {} ({} partitions) · {} B records · acks={} · {}",
        summary.mode,
        summary.topic,
        summary.partitions,
        summary.record_size,
        summary.acks,
        summary.bootstrap_server
    );

    let r_max = rates.iter().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..r_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("records/s")
        .draw()?;
    chart.draw_series(LineSeries::new(rates, BLUE.stroke_width(2)))?;

    let p50: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t, s.p50_ms?)))
        .collect();
    let p99: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t, s.p99_ms?)))
        .collect();
    if !p99.is_empty() {
        let l_max = p99.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&bottom)
            .caption("latency per second", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..t_max, 0.0..l_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()?;
        chart
            .draw_series(LineSeries::new(p50, GREEN.stroke_width(2)))?
            .label("p50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        chart
            .draw_series(LineSeries::new(p99, RED.stroke_width(2)))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, records: u64, p99: Option<f64>) -> Sample {
        Sample {
            t,
            records,
            p50_ms: p99.map(|p| p / 2.0),
            p99_ms: p99,
        }
    }

    #[test]
    fn throughput_divides_by_the_interval() {
        let s = [
            sample(1.0, 100, None),
            sample(2.0, 300, None),
            sample(2.5, 50, None),
        ];
        assert_eq!(
            throughput(&s),
            vec![(1.0, 100.0), (2.0, 300.0), (2.5, 100.0)]
        );
    }

    #[test]
    fn writes_an_svg_with_both_panels() {
        let dir = std::env::temp_dir().join(format!("sluice-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.svg");
        let summary = Summary {
            mode: "e2e".into(),
            client: "librdkafka".into(),
            bootstrap_server: "127.0.0.1:9092".into(),
            topic: "t".into(),
            partitions: 1,
            record_size: 1024,
            acks: "1".into(),
            compression: "none".into(),
            producers: 1,
            consumers: 1,
            groups: None,
            in_flight: None,
            records_sent: 300,
            records_acked: 300,
            records_failed: 0,
            records_consumed: 300,
            elapsed_s: 2.0,
            records_per_sec: 150.0,
            mib_per_sec: 0.15,
            latency_ms: None,
            commit_latency_ms: None,
            timeline: vec![sample(1.0, 100, Some(4.0)), sample(2.0, 200, Some(6.0))],
        };
        write_svg(&path, &summary).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("records/s") && svg.contains("p99"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
