//! Rendering one synthetic image: a shape or textured patch of a given kind on a noisy background.
//!
//! Every kind draws the same random parameters from the stream in the same order (colours,
//! gradient, noise level, size, position, angle), so classes differ only in geometry. The filled
//! shapes have the same area for the same size parameter (π r²), which keeps the classes from
//! being separable by mean colour or brightness: a network has to look at the outline.

use image::{Rgb, RgbImage};
use rand::Rng;

/// What an image shows. New kinds extend the set of classes a generated task can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShapeKind {
    /// A filled disc of radius r.
    Circle,
    /// A filled square of the disc's area.
    Square,
    /// A filled equilateral triangle of the disc's area.
    Triangle,
    /// An annulus of the disc's area (radii 0.75 r and 1.25 r).
    Ring,
    /// A plus sign of the disc's area.
    Cross,
    /// A disc filled with parallel stripes.
    Stripes,
    /// A square filled with a checkerboard.
    Checker,
    /// A disc filled with a grid of dots.
    Dots,
    /// A filled regular hexagon of the disc's area.
    Hexagon,
    /// A disc filled with a checkerboard (the texture of `Checker` in another outline).
    CheckerDisc,
    /// A disc filled with a grid of thin lines.
    Grid,
}

impl ShapeKind {
    pub const ALL: [ShapeKind; 11] = [
        ShapeKind::Circle,
        ShapeKind::Square,
        ShapeKind::Triangle,
        ShapeKind::Ring,
        ShapeKind::Cross,
        ShapeKind::Stripes,
        ShapeKind::Checker,
        ShapeKind::Dots,
        ShapeKind::Hexagon,
        ShapeKind::CheckerDisc,
        ShapeKind::Grid,
    ];

    /// Class folder name for a data set of this kind.
    pub fn folder_name(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circles",
            ShapeKind::Square => "squares",
            ShapeKind::Triangle => "triangles",
            ShapeKind::Ring => "rings",
            ShapeKind::Cross => "crosses",
            ShapeKind::Stripes => "stripes",
            ShapeKind::Checker => "checkers",
            ShapeKind::Dots => "dots",
            ShapeKind::Hexagon => "hexagons",
            ShapeKind::CheckerDisc => "checker_discs",
            ShapeKind::Grid => "grids",
        }
    }

    /// Largest distance from the centre covered by the shape, in units of r (any rotation).
    fn extent(self) -> f32 {
        match self {
            ShapeKind::Circle
            | ShapeKind::Stripes
            | ShapeKind::Dots
            | ShapeKind::CheckerDisc
            | ShapeKind::Grid => 1.0,
            ShapeKind::Hexagon => HEXAGON_CIRCUMRADIUS,
            ShapeKind::Square | ShapeKind::Checker => SQUARE_HALF * std::f32::consts::SQRT_2,
            ShapeKind::Triangle => TRIANGLE_CIRCUMRADIUS,
            ShapeKind::Ring => 1.25,
            ShapeKind::Cross => {
                (CROSS_HALF_LENGTH * CROSS_HALF_LENGTH + CROSS_HALF_WIDTH * CROSS_HALF_WIDTH).sqrt()
            }
        }
    }

    /// Whether the point `(u, v)` (relative to the centre, rotated, in units of r) is foreground.
    fn covers(self, u: f32, v: f32) -> bool {
        let r2 = u * u + v * v;
        match self {
            ShapeKind::Circle => r2 <= 1.0,
            ShapeKind::Square => u.abs().max(v.abs()) <= SQUARE_HALF,
            // Edge normals at 90°, 210° and 330°; the inradius is half the circumradius.
            ShapeKind::Triangle => [(0.0, 1.0), (-HALF_SQRT_3, -0.5), (HALF_SQRT_3, -0.5)]
                .iter()
                .all(|(nu, nv)| u * nu + v * nv <= TRIANGLE_CIRCUMRADIUS / 2.0),
            ShapeKind::Ring => (0.75 * 0.75..=1.25 * 1.25).contains(&r2),
            ShapeKind::Cross => {
                let (a, b) = (u.abs(), v.abs());
                (a <= CROSS_HALF_WIDTH && b <= CROSS_HALF_LENGTH)
                    || (b <= CROSS_HALF_WIDTH && a <= CROSS_HALF_LENGTH)
            }
            ShapeKind::Stripes => r2 <= 1.0 && (u * 3.0).rem_euclid(1.0) < 0.5,
            ShapeKind::Checker => {
                u.abs().max(v.abs()) <= SQUARE_HALF
                    && (((u * 2.5).floor() + (v * 2.5).floor()) as i32).rem_euclid(2) == 0
            }
            ShapeKind::Dots => {
                let (du, dv) = (
                    (u * 2.5).rem_euclid(1.0) - 0.5,
                    (v * 2.5).rem_euclid(1.0) - 0.5,
                );
                r2 <= 1.0 && du * du + dv * dv <= 0.3 * 0.3
            }
            // Edge normals every 60°, starting at 0°.
            ShapeKind::Hexagon => [(1.0, 0.0), (0.5, HALF_SQRT_3), (-0.5, HALF_SQRT_3)]
                .iter()
                .all(|(nu, nv)| (u * nu + v * nv).abs() <= HEXAGON_APOTHEM),
            ShapeKind::CheckerDisc => {
                r2 <= 1.0 && (((u * 2.5).floor() + (v * 2.5).floor()) as i32).rem_euclid(2) == 0
            }
            ShapeKind::Grid => {
                let on_line = |t: f32| (t * 2.5).rem_euclid(1.0) < 0.3;
                r2 <= 1.0 && (on_line(u) || on_line(v))
            }
        }
    }
}

/// Half the side of a square with the unit disc's area: s² = π/4.
const SQUARE_HALF: f32 = 0.886_226_9;
/// Circumradius of an equilateral triangle with the unit disc's area: (3√3/4) R² = π.
const TRIANGLE_CIRCUMRADIUS: f32 = 1.555_041;
const HALF_SQRT_3: f32 = 0.866_025_4;
/// Apothem of a regular hexagon with the unit disc's area: 2√3 a² = π.
const HEXAGON_APOTHEM: f32 = 0.952_313;
/// Its circumradius, 2a/√3.
const HEXAGON_CIRCUMRADIUS: f32 = 1.099_636_6;
/// Plus sign of two bars 2w x 2L: area 8 L w - 4 w² = π.
const CROSS_HALF_WIDTH: f32 = 0.3;
const CROSS_HALF_LENGTH: f32 = (std::f32::consts::PI + 4.0 * 0.09) / (8.0 * 0.3);

/// Where the shape sits: centre in pixels, size parameter r in pixels, rotation in radians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub cx: f32,
    pub cy: f32,
    pub r: f32,
    pub angle: f32,
}

/// Fraction of pixel (x, y) covered by the shape, from 4x4 supersampling.
pub fn coverage(kind: ShapeKind, at: &Placement, x: u32, y: u32) -> f32 {
    const N: u32 = 4;
    let (sin, cos) = at.angle.sin_cos();
    let mut hits = 0;
    for sy in 0..N {
        for sx in 0..N {
            let px = x as f32 + (sx as f32 + 0.5) / N as f32 - at.cx;
            let py = y as f32 + (sy as f32 + 0.5) / N as f32 - at.cy;
            let (u, v) = ((px * cos + py * sin) / at.r, (py * cos - px * sin) / at.r);
            hits += u32::from(kind.covers(u, v));
        }
    }
    hits as f32 / (N * N) as f32
}

fn random_colour(rng: &mut impl Rng) -> [f32; 3] {
    [0; 3].map(|_| rng.random_range(0.0..255.0))
}

/// Render one `size` x `size` image of `kind`, drawing every random choice from `rng`.
pub fn render(kind: ShapeKind, size: u32, rng: &mut impl Rng) -> RgbImage {
    let side = size as f32;
    let background = random_colour(rng);
    // Foreground far enough from the background to be visible; the rule is the same for all kinds.
    let foreground = loop {
        let c = random_colour(rng);
        let d2: f32 = c
            .iter()
            .zip(&background)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        if d2 >= 90.0 * 90.0 {
            break c;
        }
    };
    let gradient_angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let gradient: f32 = rng.random_range(0.0..40.0);
    let noise: f32 = rng.random_range(4.0..20.0);
    let r = side * rng.random_range(0.15..0.30);
    let margin = r * kind.extent();
    let at = Placement {
        cx: rng.random_range(margin..(side - margin).max(margin + 1e-3)),
        cy: rng.random_range(margin..(side - margin).max(margin + 1e-3)),
        r,
        angle: rng.random_range(-20f32.to_radians()..20f32.to_radians()),
    };
    let (gs, gc) = gradient_angle.sin_cos();
    let mut img = RgbImage::new(size, size);
    for (x, y, pixel) in img.enumerate_pixels_mut() {
        let alpha = coverage(kind, &at, x, y);
        // A linear shade across the background, from -gradient/2 to +gradient/2.
        let shade = gradient * (((x as f32 + 0.5) * gc + (y as f32 + 0.5) * gs) / side - 0.5);
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            let base = (background[c] + shade) * (1.0 - alpha) + foreground[c] * alpha;
            let v = base + rng.random_range(-noise..noise);
            rgb[c] = v.round().clamp(0.0, 255.0) as u8;
        }
        *pixel = Rgb(rgb);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng;

    /// Total coverage of a shape placed well inside a 200x200 grid, in units of π r².
    fn relative_area(kind: ShapeKind, angle: f32) -> f32 {
        let at = Placement {
            cx: 100.3,
            cy: 99.6,
            r: 40.0,
            angle,
        };
        let mut total = 0.0;
        for y in 0..200 {
            for x in 0..200 {
                total += coverage(kind, &at, x, y);
            }
        }
        total / (std::f32::consts::PI * 40.0 * 40.0)
    }

    #[test]
    fn filled_shapes_have_the_area_of_the_disc() {
        for kind in [
            ShapeKind::Circle,
            ShapeKind::Square,
            ShapeKind::Triangle,
            ShapeKind::Ring,
            ShapeKind::Cross,
            ShapeKind::Hexagon,
        ] {
            for angle in [0.0, 0.3] {
                let a = relative_area(kind, angle);
                assert!(
                    (a - 1.0).abs() < 0.01,
                    "{kind:?} at {angle}: area {a} x π r²"
                );
            }
        }
        // Textures only partly cover their region.
        for kind in [
            ShapeKind::Stripes,
            ShapeKind::Checker,
            ShapeKind::Dots,
            ShapeKind::CheckerDisc,
            ShapeKind::Grid,
        ] {
            let a = relative_area(kind, 0.0);
            assert!((0.2..0.8).contains(&a), "{kind:?}: {a}");
        }
    }

    #[test]
    fn extent_bounds_the_shape() {
        for kind in ShapeKind::ALL {
            let e = kind.extent();
            for k in 0..360 {
                let a = (k as f32).to_radians();
                let (u, v) = (1.001 * e * a.cos(), 1.001 * e * a.sin());
                assert!(!kind.covers(u, v), "{kind:?} covers ({u}, {v}) beyond {e}");
            }
        }
    }

    #[test]
    fn rendering_is_deterministic_and_kinds_differ() {
        let image = |kind, purpose| render(kind, 24, &mut rng::stream(1, purpose));
        assert_eq!(image(ShapeKind::Circle, "a"), image(ShapeKind::Circle, "a"));
        assert_ne!(image(ShapeKind::Circle, "a"), image(ShapeKind::Circle, "b"));
        let images: Vec<RgbImage> = ShapeKind::ALL.iter().map(|&k| image(k, "a")).collect();
        for (i, a) in images.iter().enumerate() {
            assert_eq!(a.dimensions(), (24, 24));
            for b in &images[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let names: std::collections::BTreeSet<_> =
            ShapeKind::ALL.iter().map(|k| k.folder_name()).collect();
        assert_eq!(names.len(), ShapeKind::ALL.len());
    }
}
