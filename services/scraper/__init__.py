"""cryptoviz-scraper: the crypto news scraper producing rawarticle."""
