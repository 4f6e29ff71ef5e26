"""Serving side: never imports training or torch."""
