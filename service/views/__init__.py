"""Views of a result for people: the HTML heatmap page and PNG/SVG heatmaps (`service.routes.views`)."""
