// Respects the EHR's look (`smart_style_url` in the token response, SMART App Launch
// "styling"): its colours, font and radius become the app's CSS variables. A style that
// cannot be fetched (another origin under connect-src 'self', or down) leaves the default.

const COLOR = /^#[0-9a-f]{3,8}$|^(rgb|hsl)a?\([0-9., %]+\)$/i;
const LENGTH = /^\d+(\.\d+)?(px|rem|em)$/;
const FONT = /^[\w\s,'"-]+$/;

/** style property → [CSS variable, allowed values] */
const MAPPING = {
  color_highlight: ['--accent', COLOR],
  color_background: ['--bg', COLOR],
  color_error: ['--urgent', COLOR],
  color_success: ['--ok', COLOR],
  dim_border_radius: ['--radius', LENGTH],
  font_family_body: ['font-family', FONT],
};

export async function applySmartStyle(url) {
  if (!url) {
    return;
  }
  let style;
  try {
    const response = await fetch(url, { headers: { accept: 'application/json' } });
    style = response.ok ? await response.json() : undefined;
  } catch {
    style = undefined;
  }
  if (!style || typeof style !== 'object') {
    return;
  }
  const root = document.documentElement;
  for (const [property, [variable, allowed]] of Object.entries(MAPPING)) {
    const value = style[property];
    // Only well-formed values: the EHR's file must not be able to inject arbitrary CSS.
    if (typeof value === 'string' && allowed.test(value.trim())) {
      root.style.setProperty(variable, value.trim());
    }
  }
  root.dataset.smartStyle = 'applied';
}
